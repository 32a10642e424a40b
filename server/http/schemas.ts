/**
 * HTTP request and response schemas, declared once: fastify validates requests and serialises
 * responses with them, and the handlers' types are inferred from them.
 */
import { Type, type Static } from 'typebox';
import { DEPLOYMENT_STATES, EVENT_TYPES } from '../../boot/deployment.ts';

const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer> | ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);

export const ErrorBody = Type.Object({ error: Type.String() }, { additionalProperties: true });

export const MacParams = Type.Object({
  mac: Type.String({ minLength: 12, maxLength: 17, description: 'aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff, any case' }),
});
export type MacParamsT = Static<typeof MacParams>;

const PackageFileOut = Type.Object({ path: Type.String(), size: Type.Integer(), sha256: Type.String(), url: Type.String() });
const PackageOut = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  url: Type.String(),
  size: Type.Integer(),
  sha256: Type.String(),
  files: Type.Array(PackageFileOut),
});

const StepOut = Type.Object({
  index: Type.Integer(),
  type: Type.String(),
  name: Type.String(),
  continueOnError: Type.Boolean(),
  package: Type.Optional(Type.Union([PackageOut, Type.Null()])),
  image: Type.Optional(Type.Object({ index: Type.Integer(), name: Type.Optional(Type.String()) })),
  disk: Type.Optional(Type.Integer()),
  command: Type.Optional(Type.String()),
  run: Type.Optional(Type.String()),
  into: Type.Optional(Type.String()),
  note: Type.Optional(Type.String()),
});

export const SequenceOut = Type.Object({
  mac: Type.String(),
  sequence: Type.String(),
  description: Type.Optional(Type.String()),
  deployment: Type.Object({ key: Type.String(), generation: Type.Integer(), state: Type.String(), step: Nullable(Type.Integer()) }),
  variables: Type.Record(Type.String(), Type.String()),
  steps: Type.Array(StepOut),
  reportUrl: Type.String(),
});

export const SequenceRefused = Type.Object({
  error: Type.String(),
  action: Type.String({ description: 'what the machine should do instead: local, ignore, menu, or unavailable (try later)' }),
  state: Nullable(Type.String()),
});

export const EventBody = Type.Object(
  {
    type: Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))),
    step: Type.Optional(Type.Integer({ minimum: 0 })),
    percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
    message: Type.Optional(Type.String({ maxLength: 4000 })),
  },
  { additionalProperties: false },
);
export type EventBodyT = Static<typeof EventBody>;

const DeploymentOut = Type.Object({
  key: Nullable(Type.String()),
  sequence: Nullable(Type.String()),
  state: Type.Union([Type.String({ enum: [...DEPLOYMENT_STATES] }), Type.Null()]),
  generation: Type.Integer(),
  step: Nullable(Type.Integer()),
  stepTotal: Nullable(Type.Integer()),
  percent: Nullable(Type.Number()),
  message: Nullable(Type.String()),
  startedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  stateChangedAt: Nullable(Type.String()),
});

const AssignmentOut = Type.Object({
  matchedBy: Type.String(),
  action: Type.String(),
  sequence: Nullable(Type.String()),
  group: Nullable(Type.String()),
  hostname: Nullable(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
  /** What the machine gets if it boots now. */
  nextBoot: Type.String(),
});

export const MachineOut = Type.Object({
  mac: Type.String(),
  uuid: Nullable(Type.String()),
  firstSeen: Nullable(Type.String()),
  lastSeen: Nullable(Type.String()),
  firmware: Nullable(Type.String()),
  ip: Nullable(Type.String()),
  model: Nullable(Type.String()),
  assignment: AssignmentOut,
  deployment: DeploymentOut,
});
export type MachineOutT = Static<typeof MachineOut>;

export const EventOut = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  generation: Nullable(Type.Integer()),
  type: Type.String(),
  step: Nullable(Type.Integer()),
  percent: Nullable(Type.Number()),
  message: Nullable(Type.String()),
  state: Nullable(Type.String()),
});

export const MachineDetailOut = Type.Object({ ...MachineOut.properties, events: Type.Array(EventOut) });

export const MachineList = Type.Object({ machines: Type.Array(MachineOut) });

export const EventsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'how many events (default 200)' })),
    before: Type.Optional(Type.Integer({ minimum: 1, description: 'only events with a smaller id: the page before' })),
  },
  { additionalProperties: false },
);
export type EventsQueryT = Static<typeof EventsQuery>;
export const EventPage = Type.Object({
  mac: Type.String(),
  events: Type.Array(EventOut),
  /** Pass as `before` to get the older page; null when there is none. */
  next: Type.Union([Type.Integer(), Type.Null()]),
});

export const EventAccepted = Type.Object({ accepted: Type.Boolean(), state: Nullable(Type.String()), step: Nullable(Type.Integer()), summary: Type.String() });
