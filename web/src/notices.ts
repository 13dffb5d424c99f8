/** What the page tells the user: errors in words (an alert that stays until dismissed or
 * replaced) and short announcements for screen readers (a polite live region). */

import { byId } from "./dom";

const alertBox = byId("alert");
const alertText = byId("alert-text");
const announcer = byId("announcer");

byId("alert-close").addEventListener("click", clearError);

export function showError(message: string): void {
  alertText.textContent = message;
  alertBox.hidden = false;
}

export function clearError(): void {
  alertBox.hidden = true;
  alertText.textContent = "";
}

export function announce(message: string): void {
  // Clearing first makes screen readers repeat an identical message.
  announcer.textContent = "";
  requestAnimationFrame(() => { announcer.textContent = message; });
}
