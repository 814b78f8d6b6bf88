"""Our mustache renderer against chevron (the reference's renderer), and Prompt.format_messages
against the reference's ``Prompt.format_messages``."""

from __future__ import annotations

import copy
import html
from typing import Any

import chevron
import pytest
from literalai.prompt_engineering.prompt import Prompt as RefPrompt

from agent._models import Prompt
from agent._mustache import MustacheError, render

DATA: dict[str, Any] = {
    "name": "Ada",
    "html": "<b>&\"'</b>",
    "zero": 0,
    "false": False,
    "none": None,
    "empty": "",
    "list": ["a", "b", "c"],
    "nums": [0, 1, 2],
    "people": [{"name": "x", "age": 1}, {"name": "y", "age": 2}],
    "nested": {"inner": {"deep": "found"}},
    "empty_list": [],
    "flag": True,
    "float": 1.5,
}

TEMPLATES = [
    "plain text",
    "",
    "Hello {{name}}!",
    "{{ name }} with spaces",
    "escaped {{html}} raw {{{html}}} amp {{& html}}",
    "missing [{{nope}}] [{{nested.nope}}]",
    "zero={{zero}} false={{false}} none={{none}} empty={{empty}} float={{float}}",
    "dotted {{nested.inner.deep}} index {{list.1}} {{people.0.name}}",
    "{{#list}}[{{.}}]{{/list}}",
    "{{#nums}}<{{.}}>{{/nums}}",
    "{{#people}}{{name}}:{{age}} {{/people}}",
    "{{#nested}}{{inner.deep}}{{/nested}}",
    "{{#flag}}yes {{name}}{{/flag}}{{^flag}}no{{/flag}}",
    "{{#empty_list}}never{{/empty_list}}{{^empty_list}}empty!{{/empty_list}}",
    "{{^nope}}inverted missing{{/nope}}",
    "{{#zero}}zero-section{{/zero}}{{^zero}}not zero{{/zero}}",
    "{{! a comment }}after comment",
    "Hello, this is a {{test_var}} and this\n\n{{#test_list}}\n* {{.}}\n{{/test_list}}\n\nis a "
    "templated list.",
    "line 1\n  {{#list}}\n  - {{.}}\n  {{/list}}\nend",
    "  {{! standalone comment }}\nnext",
    "{{=<% %>=}}<% name %> {{name}} <%={{ }}=%>{{name}}",
    "{{#people}}{{#list}}{{name}}{{.}} {{/list}}{{/people}}",
    "{{name}} {{> partial}} end",
    "a {{#nested}}{{#inner}}{{deep}}{{/inner}}{{/nested}} b",
    "tabs\t{{#flag}}\t\n\tinside\n\t{{/flag}}\nout",
    "{{#list}}{{.}}{{^flag}}never{{/flag}}{{/list}}",
    "windows\r\n{{#flag}}\r\nx\r\n{{/flag}}\r\n",
    "{{{name}}} {{&name}}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_same_output_as_chevron(template: str) -> None:
    """Rendering (and then html.unescape, as prompts do) matches chevron."""
    data = {**DATA, "test_var": "test value", "test_list": ["item 0", "item 1", "item 2"]}
    expected = chevron.render(template, data, partials_path=None)
    assert render(template, data) == expected
    assert html.unescape(render(template, data)) == html.unescape(expected)


def test_spec_example() -> None:
    """The documented example renders exactly."""
    template = (
        "Hello, this is a {{test_var}} and this\n\n{{#test_list}}\n* {{.}}\n{{/test_list}}\n\n"
        "is a templated list."
    )
    data = {"test_var": "test value", "test_list": ["item 0", "item 1", "item 2"]}
    assert render(template, data) == (
        "Hello, this is a test value and this\n\n* item 0\n* item 1\n* item 2\n\n"
        "is a templated list."
    )


@pytest.mark.parametrize(
    "template", ["{{#a}}x", "{{#a}}x{{/b}}", "{{/a}}", "{{unclosed", "{{=<% %>}}"]
)
def test_malformed_templates_raise(template: str) -> None:
    """Malformed templates raise MustacheError (a ValueError)."""
    with pytest.raises(MustacheError):
        render(template, {})


def test_private_attributes_are_not_reachable() -> None:
    """Attribute lookup never reaches dunder/private attributes of objects."""
    assert render("{{obj.__class__}}{{obj._secret}}", {"obj": object()}) == ""


PROMPT = {
    "id": "p1",
    "lineage": {"name": "greeter", "deletedAt": None},
    "version": 3,
    "url": "http://x/projects/p/playground?name=greeter&version=3",
    "createdAt": "2024-01-01T00:00:00Z",
    "type": "CHAT",
    "templateMessages": [
        {"role": "system", "content": "You are {{persona}} & kind.", "uuid": "u1"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "{{#items}}- {{.}}\n{{/items}}Q: {{question}}"},
                {"type": "image_url", "image_url": {"url": "http://img"}},
            ],
        },
    ],
    "tools": None,
    "settings": {"provider": "openai", "model": "gpt-4o", "temperature": 0.2},
    "variables": [{"name": "persona", "language": "plaintext"}],
    "variablesDefaultValues": {"persona": "a bot", "items": ["a", "b"]},
}


def test_prompt_from_dict_matches_the_reference() -> None:
    """name from lineage.name, provider taken out of settings, other fields as read."""
    ours = Prompt.from_dict(dict(PROMPT))
    ref = RefPrompt.from_dict(None, {**PROMPT, "settings": dict(PROMPT["settings"])})  # type: ignore[arg-type]
    assert ours.name == ref.name == "greeter" and ours.provider == ref.provider == "openai"
    assert ours.settings == ref.settings == {"model": "gpt-4o", "temperature": 0.2}
    assert ours.tools is None and ref.tools is None
    assert (ours.id, ours.version, ours.url, ours.type) == (ref.id, ref.version, ref.url, ref.type)
    assert ours.variables_default_values == ref.variables_default_values
    assert Prompt.from_dict({"id": "x", "lineage": None, "settings": None}).name == ""


def test_format_messages_matches_the_reference() -> None:
    """Same formatted messages (and hidden __literal_prompt__) as the reference."""
    ours = Prompt.from_dict(dict(PROMPT)).format_messages(question="why <now>?", persona="Bo")
    ref_prompt = RefPrompt.from_dict(None, copy.deepcopy(PROMPT))  # type: ignore[arg-type]
    ref = ref_prompt.format_messages(question="why <now>?", persona="Bo")
    assert ours == ref
    assert ours[0] == {"role": "system", "content": "You are Bo & kind."}
    assert ours[0].__literal_prompt__ == ref[0].__literal_prompt__
    assert ours[1]["content"][0]["text"] == "- a\n- b\nQ: why <now>?"
    assert not hasattr(ours[1], "__literal_prompt__")


def test_format_leaves_the_template_untouched() -> None:
    """Unlike the reference, formatting does not rewrite the prompt's own template parts."""
    prompt = Prompt.from_dict(dict(PROMPT))
    before = repr(prompt.template_messages)
    prompt.format_messages(question="q")
    prompt.format({"question": "q2"})
    assert repr(prompt.template_messages) == before


FRAGMENTS = [
    "text",
    " ",
    "\n",
    "  ",
    "\t",
    "{{name}}",
    "{{{html}}}",
    "{{html}}",
    "{{.}}",
    "{{zero}}",
    "{{#list}}",
    "{{/list}}",
    "{{#people}}",
    "{{/people}}",
    "{{^flag}}",
    "{{/flag}}",
    "{{#nested}}",
    "{{/nested}}",
    "{{! c }}",
    "{{nested.inner.deep}}",
    "{{none}}",
    "&amp;",
]


def test_random_templates_agree_with_chevron() -> None:
    """Random well-formed and malformed templates: same output, or both refuse."""
    import random

    rng = random.Random(1234)
    compared = 0
    for _ in range(3000):
        template = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12)))
        try:
            expected = chevron.render(template, dict(DATA), partials_path=None)
        except (chevron.ChevronError, IndexError, TypeError):
            with pytest.raises(MustacheError):
                render(template, dict(DATA))
            continue
        assert render(template, dict(DATA)) == expected, template
        compared += 1
    assert compared > 500
