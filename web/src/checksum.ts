/**
 * Part checksums, as storage takes them (base64 of the digest): SHA-256 with the browser's
 * own crypto where the page has it (a secure context: HTTPS, or localhost), else CRC32C,
 * computed here. The checksum is signed into the part's URL, so storage refuses a part whose
 * bytes changed on the way.
 */

export type ChecksumAlgorithm = "SHA256" | "CRC32C";

/** What a new upload should use on this page. */
export function preferredAlgorithm(): ChecksumAlgorithm {
  return globalThis.crypto?.subtle ? "SHA256" : "CRC32C";
}

function base64(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

let crcTable: Uint32Array | null = null;

function crc32cTable(): Uint32Array {
  if (crcTable) return crcTable;
  crcTable = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    crcTable[byte] = crc >>> 0;
  }
  return crcTable;
}

function crc32c(data: Uint8Array): Uint8Array {
  const table = crc32cTable();
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  crc = (crc ^ 0xffffffff) >>> 0;
  return new Uint8Array([crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff]);
}

/** The checksum of a part's bytes, base64. */
export async function partChecksum(part: Blob, algorithm: ChecksumAlgorithm): Promise<string> {
  const bytes = new Uint8Array(await part.arrayBuffer());
  if (algorithm === "SHA256") {
    return base64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  }
  return base64(crc32c(bytes));
}
