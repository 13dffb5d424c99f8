/**
 * Uploads this browser may resume after a reload: the file id each picked file's upload got,
 * kept in localStorage under the file's name, size and modification time. Picking the same,
 * unchanged file again continues its upload where it stopped; the record goes once the
 * upload completes, fails or is cancelled.
 */

const PREFIX = "dropfile.upload:";

function keyOf(file: File): string {
  return `${PREFIX}${file.name}:${file.size}:${file.lastModified}`;
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: uploads simply start afresh
  }
}

export function recordedFileId(file: File): string | null {
  return storage()?.getItem(keyOf(file)) ?? null;
}

export function recordUpload(file: File, fileId: string): void {
  try {
    storage()?.setItem(keyOf(file), fileId);
  } catch {
    // full or disabled: resuming is a convenience
  }
}

export function forgetUpload(file: File): void {
  storage()?.removeItem(keyOf(file));
}
