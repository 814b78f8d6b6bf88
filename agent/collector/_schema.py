# ruff: noqa: E501  (the SDL keeps the reference schema's long lines)
"""GraphQL SDL of the collector: accepts every document of the reference SDK (protocol §8).

Differences from the reference schema: ``StepType`` is a lenient scalar (validated by the
resolvers, so one bad step of a batch fails alone), and ``DateTime`` values are validated by
the resolvers for the same reason.
"""

SDL = """
scalar Json        # any JSON value
scalar DateTime    # ISO-8601 string

# StepType is a scalar (not an enum) so that an unknown type inside an ingest batch reaches the
# resolver and fails only its own alias (ok: false) instead of the whole request.
scalar StepType
enum ScoreType { HUMAN CODE AI }
enum DatasetType { key_value generation }
enum GenerationType { CHAT COMPLETION }
enum OrderDirection { ASC DESC }

# ---- filter / order inputs (one per resource; same shape) ----
input participantsInputType { field: String!  operator: String!  value: Json  path: String }
input ThreadsInputType      { field: String!  operator: String!  value: Json  path: String }
input stepsInputType        { field: String!  operator: String!  value: Json  path: String }
input scoresInputType       { field: String!  operator: String!  value: Json  path: String }
input generationsInputType  { field: String!  operator: String!  value: Json  path: String }
input ParticipantsOrderByInput { column: String!  direction: OrderDirection! }   # not sent by the SDK
input ThreadsOrderByInput     { column: String!  direction: OrderDirection! }
input StepsOrderByInput       { column: String!  direction: OrderDirection! }
input ScoresOrderByInput      { column: String!  direction: OrderDirection! }
input GenerationsOrderByInput { column: String!  direction: OrderDirection! }

# ---- payload inputs (must list every key the SDK may send) ----
input GenerationPayloadInput {
  id: String  promptId: String  provider: String  model: String  error: String
  settings: Json  variables: Json  tags: [String!]  metadata: Json  tools: Json
  tokenCount: Int  inputTokenCount: Int  outputTokenCount: Int
  ttFirstToken: Float  tokenThroughputInSeconds: Float  duration: Float
  type: GenerationType
  messages: Json  messageCompletion: Json      # CHAT
  prompt: String  completion: String           # COMPLETION
}
input ScorePayloadInput {
  id: String  name: String!  type: ScoreType!  value: Float!
  stepId: String  datasetExperimentItemId: String  comment: String  tags: [String!]
  label: String  scorer: String
}
input AttachmentPayloadInput {
  id: String  metadata: Json  mime: String  name: String  objectKey: String  url: String
  stepId: String  threadId: String
}
input PromptVersionRolloutInput { version: Int!  rollout: Int! }

# ---- output types ----
type PageInfo { startCursor: String  endCursor: String  hasNextPage: Boolean!  hasPreviousPage: Boolean! }

type Participant {
  id: String!  identifier: String!  metadata: Json!   # metadata never null ({} by default)
  createdAt: DateTime  lastEngaged: DateTime  threadCount: Int  tokenCount: Int
}
type ParticipantEdge { cursor: String!  node: Participant! }
type ParticipantConnection { pageInfo: PageInfo!  totalCount: Int!  edges: [ParticipantEdge!]! }

type Thread {
  id: String!  name: String  metadata: Json  tags: [String!]  createdAt: DateTime
  participant: Participant  steps: [Step!]  tokenCount: Int  duration: Float
}
type ThreadEdge { cursor: String!  node: Thread! }
type ThreadConnection { pageInfo: PageInfo!  totalCount: Int!  edges: [ThreadEdge!]! }

type Step {
  id: String!  threadId: String  rootRunId: String  parentId: String
  startTime: DateTime  endTime: DateTime  createdAt: DateTime
  type: StepType  error: String  input: Json  output: Json  metadata: Json
  environment: String  tags: [String!]  name: String
  scores: [Score!]  generation: Generation  attachments: [Attachment!]
  thread: Thread
}
type StepEdge { cursor: String!  node: Step! }
type StepConnection { pageInfo: PageInfo!  totalCount: Int!  edges: [StepEdge!]! }

type Generation {
  id: String!  projectId: String  type: GenerationType!
  prompt: String  completion: String  messages: Json  messageCompletion: Json
  provider: String  model: String  variables: Json  tools: Json  settings: Json
  tokenCount: Int  inputTokenCount: Int  outputTokenCount: Int
  ttFirstToken: Float  duration: Float  tokenThroughputInSeconds: Float
  error: String  tags: [String!]  metadata: Json  createdAt: DateTime
  stepId: String  step: Step
}
type GenerationEdge { cursor: String!  node: Generation! }
type GenerationConnection { pageInfo: PageInfo!  totalCount: Int!  edges: [GenerationEdge!]! }

type Score {
  id: String!  name: String!  type: ScoreType!  value: Float!
  label: String  comment: String  scorer: String  tags: [String!]
  stepId: String  datasetExperimentItemId: String  projectId: String
  createdAt: DateTime  updatedAt: DateTime  step: Step
}
type ScoreEdge { cursor: String!  node: Score! }
type ScoreConnection { pageInfo: PageInfo!  totalCount: Int!  edges: [ScoreEdge!]! }

type Attachment {
  id: String!  threadId: String  stepId: String  metadata: Json
  mime: String  name: String  objectKey: String  url: String
}

type Dataset { id: String!  createdAt: DateTime  name: String  description: String  metadata: Json  type: DatasetType }
type DatasetItem {
  id: String!  createdAt: DateTime  datasetId: String!  metadata: Json
  input: Json  expectedOutput: Json  intermediarySteps: Json  stepId: String
}
type DatasetExperiment { id: String!  createdAt: DateTime  name: String!  datasetId: String  promptExperimentId: String  params: Json }
type DatasetExperimentItem {
  id: String!  datasetExperimentId: String!  experimentRunId: String  datasetItemId: String  input: Json  output: Json
}

type PromptLineage { id: String!  name: String!  deletedAt: DateTime }
type PromptVersion {
  id: String!  version: Int!  lineage: PromptLineage!   # lineage must never be null
  createdAt: DateTime  updatedAt: DateTime  type: GenerationType  url: String
  label: String  status: String  tags: [String!]
  templateMessages: Json  tools: Json  settings: Json   # settings.provider carries the provider
  variables: Json  variablesDefaultValues: Json
}
type PromptExperiment {
  id: String!  fromLineageId: String  fromVersion: Int  scoreTemplateId: String
  projectId: String  projectUserId: String
  templateMessages: Json  settings: Json  tools: Json  variables: Json
}
type PromptRollout { version: Int!  rollout: Int! }
type PromptRolloutEdge { node: PromptRollout! }
type PromptRolloutConnection { pageInfo: PageInfo!  edges: [PromptRolloutEdge!]! }

type IngestResult { ok: Boolean!  message: String }
type OperationResult { ok: Boolean!  message: String  errorCode: String }

type Query {
  participants(after: ID, before: ID, cursorAnchor: DateTime, filters: [participantsInputType!],
               orderBy: ParticipantsOrderByInput,
               first: Int, last: Int, projectId: String): ParticipantConnection!
  participant(id: String, identifier: String): Participant
  threads(after: ID, before: ID, cursorAnchor: DateTime, filters: [ThreadsInputType!],
          orderBy: ThreadsOrderByInput, first: Int, last: Int, skip: Int, projectId: String,
          stepTypesToKeep: [StepType!]): ThreadConnection!
  threadDetail(id: String!): Thread
  steps(after: ID, before: ID, cursorAnchor: DateTime, filters: [stepsInputType!],
        orderBy: StepsOrderByInput, first: Int, last: Int, projectId: String): StepConnection!
  step(id: String!): Step
  scores(after: ID, before: ID, cursorAnchor: DateTime, filters: [scoresInputType!],
         orderBy: ScoresOrderByInput, first: Int, last: Int, projectId: String): ScoreConnection!
  generations(after: ID, before: ID, cursorAnchor: DateTime, filters: [generationsInputType!],
              orderBy: GenerationsOrderByInput, first: Int, last: Int, projectId: String): GenerationConnection!
  attachment(id: String!): Attachment
  datasetItem(id: String!): DatasetItem
  promptLineage(name: String!): PromptLineage
  promptVersion(id: String, name: String, version: Int): PromptVersion
  promptLineageRollout(projectId: String, lineageName: String!): PromptRolloutConnection!
}

type Mutation {
  createParticipant(identifier: String!, metadata: Json): Participant!
  updateParticipant(id: String!, identifier: String, metadata: Json): Participant!
  deleteParticipant(id: String!): Participant

  createThread(name: String, metadata: Json, participantId: String, tags: [String!]): Thread!
  upsertThread(id: String!, name: String, metadata: Json, participantId: String, tags: [String!],
               environment: String): Thread!                      # environment: TS
  updateThread(id: String!, name: String, metadata: Json, participantId: String, tags: [String!]): Thread!
  deleteThread(id: String!): Thread

  createStep(threadId: String, rootRunId: String, type: StepType, startTime: DateTime, endTime: DateTime,
             input: Json, output: Json, metadata: Json, parentId: String, name: String, tags: [String!]): Step!
  updateStep(id: String!, type: StepType, startTime: DateTime, endTime: DateTime, input: Json, output: Json,
             metadata: Json, name: String, tags: [String!], parentId: String): Step!
  deleteStep(id: String!): Step
  ingestStep(id: String!, threadId: String, rootRunId: String, startTime: DateTime, endTime: DateTime,
             type: StepType, error: String, input: Json, output: Json, metadata: Json, parentId: String,
             name: String, tags: [String!], generation: GenerationPayloadInput,
             scores: [ScorePayloadInput!], attachments: [AttachmentPayloadInput!]): IngestResult!

  createGeneration(generation: GenerationPayloadInput!): Generation!

  createScore(name: String!, type: ScoreType!, value: Float!, label: String, stepId: String,
              datasetExperimentItemId: String, scorer: String, comment: String, tags: [String!],
              generationId: String): Score!                        # generationId: TS
  updateScore(id: String!, comment: String, value: Float!): Score!
  deleteScore(id: String!): Score

  createAttachment(metadata: Json, mime: String, name: String!, objectKey: String, stepId: String!,
                   url: String): Attachment!
  updateAttachment(id: String!, metadata: Json, mime: String, name: String, objectKey: String,
                   projectId: String, url: String): Attachment!
  deleteAttachment(id: String!): Attachment

  createDataset(name: String!, description: String, metadata: Json, type: DatasetType): Dataset!
  updateDataset(id: String!, name: String, description: String, metadata: Json): Dataset!
  deleteDataset(id: String!): Dataset
  createDatasetItem(datasetId: String!, input: Json!, expectedOutput: Json, metadata: Json,
                    generationId: String): DatasetItem!
  deleteDatasetItem(id: String!): DatasetItem
  addStepToDataset(datasetId: String!, stepId: String!, metadata: Json): DatasetItem!
  addGenerationToDataset(datasetId: String!, generationId: String!, metadata: Json): DatasetItem!
  createDatasetExperiment(name: String!, datasetId: String, promptExperimentId: String, params: Json): DatasetExperiment!
  createDatasetExperimentItem(datasetExperimentId: String!, datasetItemId: String, experimentRunId: String,
                              input: Json, output: Json): DatasetExperimentItem!

  createPromptLineage(name: String!, description: String): PromptLineage!
  createPromptVersion(lineageId: String!, versionDesc: String, templateMessages: Json, tools: Json,
                      settings: Json, variables: Json, variablesDefaultValues: Json): PromptVersion!
  createPromptExperiment(fromLineageId: String, fromVersion: Int, scoreTemplateId: String,
                         templateMessages: Json, settings: Json, tools: Json, variables: Json): PromptExperiment!
  updatePromptLineageRollout(projectId: String, name: String!,
                             rollouts: [PromptVersionRolloutInput!]!): OperationResult!
}
"""
