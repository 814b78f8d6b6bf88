"""The GraphQL documents of the Literal API, as the reference SDK (literalai 0.1.300) sends them.

Same operation names, variable declarations (names and types are part of the wire
contract), root fields, arguments and selections; the batched ``AddStep`` and
``CreateScores`` documents depend only on the batch size and are built once per size.
"""

# ruff: noqa: PLR0917  (document helpers take the parts of a document positionally)

from __future__ import annotations

import functools
from collections.abc import Sequence

STEP_FIELDS = """
        id
        threadId
        rootRunId
        parentId
        startTime
        endTime
        createdAt
        type
        error
        input
        output
        metadata
        environment
        scores { id type name value comment }
        tags
        generation {
          prompt completion createdAt provider model variables messages messageCompletion
          tools settings stepId tokenCount inputTokenCount outputTokenCount ttFirstToken
          duration tokenThroughputInSeconds error type
        }
        name
        attachments { id stepId threadId metadata mime name objectKey url }"""

THREAD_SHALLOW_FIELDS = """
        id
        name
        metadata
        tags
        createdAt
        participant { id identifier metadata }"""

THREAD_FIELDS = THREAD_SHALLOW_FIELDS + "\n        steps {" + STEP_FIELDS + "\n        }"

ATTACHMENT_FIELDS = "id threadId stepId metadata mime name objectKey url"
DATASET_FIELDS = "id createdAt name description metadata type"
DATASET_ITEM_FIELDS = (
    "id createdAt datasetId metadata input expectedOutput intermediarySteps stepId"
)

USER_NODE = "id createdAt lastEngaged threadCount tokenCount identifier metadata"
SCORE_NODE = """comment createdAt id projectId stepId datasetExperimentItemId type updatedAt
                name value tags step { thread { id participant { identifier } } }"""
GENERATION_NODE = """id projectId prompt completion createdAt provider model variables
                messages messageCompletion tools settings stepId tokenCount duration
                inputTokenCount outputTokenCount ttFirstToken duration
                tokenThroughputInSeconds error type tags metadata
                step { threadId thread { participant { identifier } } }"""


def _connection_query(
    operation: str,
    root: str,
    filters_type: str,
    node: str,
    order_type: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """A list query: the reference's argument list, CONNECTION selection around ``node``."""
    args: list[tuple[str, str]] = [
        ("after", "ID"),
        ("before", "ID"),
        ("cursorAnchor", "DateTime"),
        ("filters", f"[{filters_type}!]"),
    ]
    if order_type:
        args.append(("orderBy", order_type))
    args += [("first", "Int"), ("last", "Int"), ("projectId", "String"), *extra]
    declared = ",\n    ".join(f"${name}: {kind}" for name, kind in args)
    passed = ",\n        ".join(f"{name}: ${name}" for name, _ in args)
    return f"""
query {operation}(
    {declared},
    ) {{
    {root}(
        {passed},
        ) {{
        pageInfo {{
            startCursor
            endCursor
            hasNextPage
            hasPreviousPage
        }}
        totalCount
        edges {{
            cursor
            node {{
                {node}
            }}
        }}
    }}
}}
"""


def _mutation(
    operation: str,
    root: str,
    args: Sequence[tuple[str, str]],
    selection: str,
    order: Sequence[str] | None = None,
) -> str:
    """A one-field document ``operation($a: T, ...) { root(a: $a, ...) { selection } }``
    (``order``: the order of the field arguments when it differs from the declarations)."""
    declared = ",\n    ".join(f"${name}: {kind}" for name, kind in args)
    passed = ",\n        ".join(f"{name}: ${name}" for name in order or [n for n, _ in args])
    return f"""
mutation {operation}(
    {declared},
) {{
    {root}(
        {passed},
    ) {{
        {selection}
    }}
}}
"""


def _query(operation: str, root: str, args: Sequence[tuple[str, str]], selection: str) -> str:
    return "query" + _mutation(operation, root, args, selection).strip()[len("mutation") :]


GET_PARTICIPANTS = _connection_query(
    "GetParticipants", "participants", "participantsInputType", USER_NODE
)
GET_PARTICIPANT = _query(
    "GetUser",
    "participant",
    [("id", "String"), ("identifier", "String")],
    "id identifier metadata createdAt",
)
CREATE_PARTICIPANT = _mutation(
    "CreateUser",
    "createParticipant",
    [("identifier", "String!"), ("metadata", "Json")],
    "id identifier metadata",
)
UPDATE_PARTICIPANT = _mutation(
    "UpdateUser",
    "updateParticipant",
    [("id", "String!"), ("identifier", "String"), ("metadata", "Json")],
    "id identifier metadata",
)
DELETE_PARTICIPANT = _mutation("DeleteUser", "deleteParticipant", [("id", "String!")], "id")

GET_THREADS = _connection_query(
    "GetThreads",
    "threads",
    "ThreadsInputType",
    THREAD_FIELDS,
    "ThreadsOrderByInput",
    extra=[("stepTypesToKeep", "[StepType!]")],
)
LIST_THREADS = """query listThreads(
$first: Int
$after: ID
$last: Int
$before: ID
$skip: Int
$projectId: String
$filters: [ThreadsInputType!]
$orderBy: ThreadsOrderByInput
$cursorAnchor: DateTime
) {
threads(
    first: $first
    after: $after
    last: $last
    before: $before
    skip: $skip
    projectId: $projectId
    filters: $filters
    orderBy: $orderBy
    cursorAnchor: $cursorAnchor
) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
    edges {
    node {
        id createdAt tokenCount name metadata duration tags
        participant { identifier id }
    }
    }
}
}"""
_THREAD_ARGS = [
    ("name", "String"),
    ("metadata", "Json"),
    ("participantId", "String"),
    ("tags", "[String!]"),
]
CREATE_THREAD = _mutation("CreateThread", "createThread", _THREAD_ARGS, THREAD_SHALLOW_FIELDS)
UPSERT_THREAD = _mutation(
    "UpsertThread", "upsertThread", [("id", "String!"), *_THREAD_ARGS], THREAD_SHALLOW_FIELDS
)
UPDATE_THREAD = _mutation(
    "UpdateThread", "updateThread", [("id", "String!"), *_THREAD_ARGS], THREAD_SHALLOW_FIELDS
)
GET_THREAD = _query("GetThread", "threadDetail", [("id", "String!")], THREAD_FIELDS)
DELETE_THREAD = """
mutation DeleteThread($thread_id: String!) {
    deleteThread(id: $thread_id) {
        id
    }
}
"""

GET_SCORES = _connection_query(
    "GetScores", "scores", "scoresInputType", SCORE_NODE, "ScoresOrderByInput"
)
CREATE_SCORE = _mutation(
    "CreateScore",
    "createScore",
    [
        ("name", "String!"),
        ("type", "ScoreType!"),
        ("value", "Float!"),
        ("stepId", "String"),
        ("datasetExperimentItemId", "String"),
        ("comment", "String"),
        ("tags", "[String!]"),
    ],
    "id name type value stepId datasetExperimentItemId comment tags",
)
UPDATE_SCORE = _mutation(
    "UpdateScore",
    "updateScore",
    [("id", "String!"), ("comment", "String"), ("value", "Float!")],
    "id name type value stepId datasetExperimentItemId comment",
)
DELETE_SCORE = _mutation("DeleteScore", "deleteScore", [("id", "String!")], "id")

CREATE_ATTACHMENT = _mutation(
    "CreateAttachment",
    "createAttachment",
    [
        ("metadata", "Json"),
        ("mime", "String"),
        ("name", "String!"),
        ("objectKey", "String"),
        ("stepId", "String!"),
        ("url", "String"),
    ],
    ATTACHMENT_FIELDS,
)
UPDATE_ATTACHMENT = _mutation(
    "UpdateAttachment",
    "updateAttachment",
    [
        ("id", "String!"),
        ("metadata", "Json"),
        ("mime", "String"),
        ("name", "String"),
        ("objectKey", "String"),
        ("projectId", "String"),
        ("url", "String"),
    ],
    ATTACHMENT_FIELDS,
)
GET_ATTACHMENT = _query("GetAttachment", "attachment", [("id", "String!")], ATTACHMENT_FIELDS)
DELETE_ATTACHMENT = _mutation("DeleteAttachment", "deleteAttachment", [("id", "String!")], "id")

CREATE_STEP = _mutation(
    "CreateStep",
    "createStep",
    [
        ("threadId", "String"),
        ("rootRunId", "String"),
        ("type", "StepType"),
        ("startTime", "DateTime"),
        ("endTime", "DateTime"),
        ("input", "Json"),
        ("output", "Json"),
        ("metadata", "Json"),
        ("parentId", "String"),
        ("name", "String"),
        ("tags", "[String!]"),
    ],
    STEP_FIELDS,
)
UPDATE_STEP = _mutation(
    "UpdateStep",
    "updateStep",
    [
        ("id", "String!"),
        ("type", "StepType"),
        ("input", "Json"),
        ("output", "Json"),
        ("metadata", "Json"),
        ("name", "String"),
        ("startTime", "DateTime"),
        ("endTime", "DateTime"),
        ("parentId", "String"),
        ("tags", "[String!]"),
    ],
    STEP_FIELDS,
    order=[
        "id",
        "type",
        "startTime",
        "endTime",
        "input",
        "output",
        "metadata",
        "name",
        "tags",
        "parentId",
    ],
)
GET_STEPS = _connection_query(
    "GetSteps", "steps", "stepsInputType", STEP_FIELDS, "StepsOrderByInput"
)
GET_STEP = _query("GetStep", "step", [("id", "String!")], STEP_FIELDS)
DELETE_STEP = _mutation("DeleteStep", "deleteStep", [("id", "String!")], "id")

GET_GENERATIONS = _connection_query(
    "GetGenerations",
    "generations",
    "generationsInputType",
    GENERATION_NODE,
    "GenerationsOrderByInput",
)
CREATE_GENERATION = _mutation(
    "CreateGeneration",
    "createGeneration",
    [("generation", "GenerationPayloadInput!")],
    "id type",
)

CREATE_DATASET = _mutation(
    "createDataset",
    "createDataset",
    [("name", "String!"), ("description", "String"), ("metadata", "Json"), ("type", "DatasetType")],
    DATASET_FIELDS,
)
UPDATE_DATASET = _mutation(
    "UpdateDataset",
    "updateDataset",
    [("id", "String!"), ("name", "String"), ("description", "String"), ("metadata", "Json")],
    DATASET_FIELDS,
)
DELETE_DATASET = _mutation("DeleteDataset", "deleteDataset", [("id", "String!")], DATASET_FIELDS)
CREATE_EXPERIMENT = _mutation(
    "CreateDatasetExperiment",
    "createDatasetExperiment",
    [
        ("name", "String!"),
        ("datasetId", "String"),
        ("promptExperimentId", "String"),
        ("params", "Json"),
    ],
    "id name datasetId promptExperimentId params",
)
CREATE_EXPERIMENT_ITEM = _mutation(
    "CreateDatasetExperimentItem",
    "createDatasetExperimentItem",
    [
        ("datasetExperimentId", "String!"),
        ("experimentRunId", "String"),
        ("datasetItemId", "String"),
        ("input", "Json"),
        ("output", "Json"),
    ],
    "id input output datasetExperimentId experimentRunId datasetItemId",
    order=["datasetExperimentId", "datasetItemId", "experimentRunId", "input", "output"],
)
CREATE_DATASET_ITEM = _mutation(
    "CreateDatasetItem",
    "createDatasetItem",
    [
        ("datasetId", "String!"),
        ("input", "Json!"),
        ("expectedOutput", "Json"),
        ("metadata", "Json"),
        ("generationId", "String"),
    ],
    DATASET_ITEM_FIELDS,
)
GET_DATASET_ITEM = _query("GetDataItem", "datasetItem", [("id", "String!")], DATASET_ITEM_FIELDS)
DELETE_DATASET_ITEM = _mutation(
    "DeleteDatasetItem", "deleteDatasetItem", [("id", "String!")], DATASET_ITEM_FIELDS
)
ADD_STEP_TO_DATASET = _mutation(
    "AddStepToDataset",
    "addStepToDataset",
    [("datasetId", "String!"), ("stepId", "String!"), ("metadata", "Json")],
    DATASET_ITEM_FIELDS,
)
ADD_GENERATION_TO_DATASET = _mutation(
    "AddGenerationToDataset",
    "addGenerationToDataset",
    [("datasetId", "String!"), ("generationId", "String!"), ("metadata", "Json")],
    DATASET_ITEM_FIELDS,
)

CREATE_PROMPT_LINEAGE = _mutation(
    "createPromptLineage",
    "createPromptLineage",
    [("name", "String!"), ("description", "String")],
    "id name deletedAt",
)
GET_PROMPT_LINEAGE = _query("promptLineage", "promptLineage", [("name", "String!")], "id deletedAt")
CREATE_PROMPT_VERSION = _mutation(
    "createPromptVersion",
    "createPromptVersion",
    [
        ("lineageId", "String!"),
        ("versionDesc", "String"),
        ("templateMessages", "Json"),
        ("tools", "Json"),
        ("settings", "Json"),
        ("variables", "Json"),
        ("variablesDefaultValues", "Json"),
    ],
    "id lineage { name deletedAt } version createdAt tools settings templateMessages",
)
CREATE_PROMPT_VARIANT = _mutation(
    "createPromptExperiment",
    "createPromptExperiment",
    [
        ("fromLineageId", "String"),
        ("fromVersion", "Int"),
        ("scoreTemplateId", "String"),
        ("templateMessages", "Json"),
        ("settings", "Json"),
        ("tools", "Json"),
        ("variables", "Json"),
    ],
    "id fromLineageId fromVersion scoreTemplateId projectId projectUserId tools settings "
    "variables templateMessages",
)
GET_PROMPT_VERSION = _query(
    "GetPrompt",
    "promptVersion",
    [("id", "String"), ("name", "String"), ("version", "Int")],
    "createdAt id label settings status tags templateMessages tools type updatedAt url "
    "variables variablesDefaultValues version lineage { name deletedAt }",
)
GET_PROMPT_AB_TESTING = _query(
    "getPromptLineageRollout",
    "promptLineageRollout",
    [("projectId", "String"), ("lineageName", "String!")],
    "pageInfo { startCursor endCursor } edges { node { version rollout } }",
)
UPDATE_PROMPT_AB_TESTING = _mutation(
    "updatePromptLineageRollout",
    "updatePromptLineageRollout",
    [("projectId", "String"), ("name", "String!"), ("rollouts", "[PromptVersionRolloutInput!]!")],
    "ok message errorCode",
)

_STEP_VARIABLES: tuple[tuple[str, str], ...] = (
    ("id", "String!"),
    ("threadId", "String"),
    ("rootRunId", "String"),
    ("type", "StepType"),
    ("startTime", "DateTime"),
    ("endTime", "DateTime"),
    ("error", "String"),
    ("input", "Json"),
    ("output", "Json"),
    ("metadata", "Json"),
    ("parentId", "String"),
    ("name", "String"),
    ("tags", "[String!]"),
    ("generation", "GenerationPayloadInput"),
    ("scores", "[ScorePayloadInput!]"),
    ("attachments", "[AttachmentPayloadInput!]"),
)
_INGEST_ORDER = (
    "id",
    "threadId",
    "rootRunId",
    "startTime",
    "endTime",
    "type",
    "error",
    "input",
    "output",
    "metadata",
    "parentId",
    "name",
    "tags",
    "generation",
    "scores",
    "attachments",
)
_SCORE_VARIABLES: tuple[tuple[str, str], ...] = (
    ("name", "String!"),
    ("type", "ScoreType!"),
    ("value", "Float!"),
    ("label", "String"),
    ("stepId", "String"),
    ("datasetExperimentItemId", "String"),
    ("scorer", "String"),
    ("comment", "String"),
    ("tags", "[String!]"),
)


def _batched(
    operation: str,
    root: str,
    alias: str,
    spec: Sequence[tuple[str, str]],
    selection: str,
    n: int,
    order: Sequence[str] | None = None,
) -> str:
    declared = "\n        ".join(f"${name}_{i}: {kind}" for i in range(n) for name, kind in spec)
    names = order or [name for name, _ in spec]
    fields = "".join(
        f"\n      {alias}{i}: {root}(\n"
        + "".join(f"        {name}: ${name}_{i}\n" for name in names)
        + f"      ) {{\n        {selection}\n      }}\n"
        for i in range(n)
    )
    return f"\n    mutation {operation}({declared}) {{\n      {fields}\n    }}\n    "


@functools.lru_cache(maxsize=256)
def add_steps_document(n: int) -> str:
    """The ``AddStep`` document for ``n`` steps (built once per ``n``, then cached)."""
    return _batched(
        "AddStep", "ingestStep", "step", _STEP_VARIABLES, "ok\n        message", n, _INGEST_ORDER
    )


@functools.lru_cache(maxsize=256)
def create_scores_document(n: int) -> str:
    """The ``CreateScores`` document for ``n`` scores (built once per ``n``, then cached)."""
    return _batched(
        "CreateScores",
        "createScore",
        "score_",
        _SCORE_VARIABLES,
        "id\n        name\n        type\n        value\n        label\n        comment\n"
        "        scorer",
        n,
    )
