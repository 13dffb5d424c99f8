/** The quota bar above the file list: how much of the user's storage is used. */
import { byId } from "./dom";
import { formatBytes } from "./format";
import { quota } from "./share-api";

const box = byId("quota");
const text = byId("quota-text");
const bar = byId<HTMLProgressElement>("quota-bar");

let asking: Promise<void> | null = null;
let askAgain = false;
// Bumped when the view is hidden (signed out): a reading still on its way is then dropped.
let generation = 0;

/** Reads the quota again (after the list changed); a failure leaves the bar as it was. A
 * change while a reading is on its way is read again after it, never lost. */
export function refreshQuota(): Promise<void> {
  if (asking) {
    askAgain = true;
    return asking;
  }
  const mine = generation;
  asking = (async () => {
    try {
      const { usedBytes, uploadingBytes, limitBytes } = await quota();
      if (mine !== generation) return;
      const uploading = uploadingBytes > 0 ? ` (${formatBytes(uploadingBytes)} uploading)` : "";
      if (limitBytes === null) {
        text.textContent = `${formatBytes(usedBytes)} used${uploading} · no limit`;
        bar.hidden = true;
      } else {
        const percent = limitBytes > 0 ? Math.min(100, (usedBytes / limitBytes) * 100) : 100;
        text.textContent = `${formatBytes(usedBytes)} of ${formatBytes(limitBytes)} used${uploading}`;
        bar.hidden = false;
        bar.value = percent;
        bar.textContent = `${percent.toFixed(0)} %`;
        box.classList.toggle("nearly-full", percent >= 90);
      }
      box.hidden = false;
    } catch {
      // The list's own error says what is wrong; the bar keeps its last reading.
    } finally {
      asking = null;
      if (askAgain) {
        askAgain = false;
        void refreshQuota();
      }
    }
  })();
  return asking;
}

export function hideQuota(): void {
  askAgain = false;
  generation++;
  box.hidden = true;
  text.textContent = "";
}
