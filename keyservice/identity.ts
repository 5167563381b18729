/**
 * Who is calling: the identities a client certificate names in its subjectAltName. Only URI
 * and DNS names count (SPIFFE IDs are URIs; cert-manager's `dnsNames` are DNS names); the
 * subject's CN is ignored, as RFC 6125 and every current TLS stack do for identity.
 */
export interface ClientIdentity {
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
}

export const NO_IDENTITY: ClientIdentity = { uris: [], dnsNames: [] };

/**
 * Parses Node's `subjectaltname` text (`DNS:a.example, URI:spiffe://td/x`). Node prints a
 * value that holds a comma, quote or control character as a JSON string literal
 * (`URI:"spiffe://td/a,b"`), so that one name can never be read as two; quoted values are
 * decoded here, and text this parser does not understand yields no identity rather than a
 * guessed one.
 */
export function parseSubjectAltName(text: string | undefined): ClientIdentity {
  if (!text) return NO_IDENTITY;
  const uris: string[] = [];
  const dnsNames: string[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) return NO_IDENTITY;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 1);
      if (end < 0) return NO_IDENTITY;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        return NO_IDENTITY;
      }
    } else {
      const comma = text.indexOf(", ", colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    if (type === "URI") uris.push(value);
    else if (type === "DNS") dnsNames.push(value.toLowerCase());
    if (end === text.length) break;
    if (text.slice(end, end + 2) !== ", ") return NO_IDENTITY;
    i = end + 2;
  }
  return { uris, dnsNames };
}

/** Index of the quote closing the JSON string that opens at `open`, or -1. */
function closingQuote(text: string, open: number): number {
  for (let j = open + 1; j < text.length; j++) {
    if (text[j] === "\\") j++;
    else if (text[j] === '"') return j;
  }
  return -1;
}

/** All names, URIs first: what the audit log shows for a caller. */
export function identityNames(identity: ClientIdentity): string[] {
  return [...identity.uris, ...identity.dnsNames];
}
