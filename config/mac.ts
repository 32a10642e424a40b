/** MAC and UUID spellings admins and firmware use, reduced to one canonical form. */

/** `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff`, `aabbccddeeff`, `aa:bb:…` → `aa:bb:cc:dd:ee:ff`; null when not a MAC. */
export function normalizeMac(text: string): string | null {
  const hex = text.trim().toLowerCase().replace(/[:.\-]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

/** A MAC prefix (OUI or longer) in canonical `aa:bb:cc` form; null when malformed. */
export function normalizeMacPrefix(text: string): string | null {
  const hex = text.trim().toLowerCase().replace(/[:.\-]/g, '');
  if (!/^([0-9a-f]{2}){1,6}$/.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

/** SMBIOS UUID with or without dashes, any case → lowercase 8-4-4-4-12; null when malformed. */
export function normalizeUuid(text: string): string | null {
  const hex = text.trim().toLowerCase().replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/.test(hex)) return null;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
