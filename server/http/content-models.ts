/**
 * The SMBIOS strings a deploying machine reports with its sequence request, for `type: drivers,
 * package: auto`. `model` may repeat (`?model=20L5S0AA00&model=ThinkPad%20T480`); `product` and
 * `version` name SMBIOS type 1 fields for agents that send them as they are (Lenovo puts the machine
 * type in Product Name and the friendly name, "ThinkPad T480", in Version). Every string is matched
 * against the packages' model lists, an exact match on any of them before a prefix match on any
 * (content/models.ts). A single `?model=` behaves as it always did.
 */
import { Type, type Static } from 'typebox';
import { joinModels } from '../../content/models.ts';

const Smbios = Type.String({ maxLength: 200 });

export const SequenceModelQuery = Type.Object(
  {
    // With the server's coerceTypes 'array', a single ?model= arrives as a one-element list.
    model: Type.Optional(Type.Array(Smbios, { maxItems: 8, description: 'SMBIOS model (product name, or any other SMBIOS string); may repeat' })),
    product: Type.Optional(Type.String({ maxLength: 200, description: 'SMBIOS type 1 Product Name' })),
    version: Type.Optional(Type.String({ maxLength: 200, description: 'SMBIOS type 1 Version (Lenovo: the model name)' })),
  },
  { additionalProperties: false },
);
export type SequenceModelQueryT = Static<typeof SequenceModelQuery>;

/**
 * The reported strings as the one `model` value the deployment state keeps (one per line; see
 * `joinModels`), or undefined when the machine reported none.
 */
export function reportedModel(q: SequenceModelQueryT): string | undefined {
  const joined = joinModels([...(q.model ?? []), q.product ?? '', q.version ?? '']);
  return joined === '' ? undefined : joined;
}
