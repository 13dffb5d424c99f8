/** Dropfile in the browser: shows the sign-in form or the user's files, and signs out. */
import "./styles.css";
import * as api from "./api";
import { messageOf } from "./api";
import { hideAuthView, setUpAuthView, showAuthView } from "./auth-view";
import { byId } from "./dom";
import {
  activeUploads, cancelAllUploads, hideFilesView, setUpFilesView, showFilesView,
} from "./files-view";
import { clearError, showError } from "./notices";

const loading = byId("loading");
const signOutButton = byId<HTMLButtonElement>("sign-out");

function showSignedIn(): void {
  loading.hidden = true;
  hideAuthView();
  signOutButton.hidden = false;
  showFilesView();
}

function showSignedOut(): void {
  loading.hidden = true;
  hideFilesView();
  signOutButton.hidden = true;
  showAuthView();
}

async function signOut(): Promise<void> {
  const running = activeUploads();
  if (running && !window.confirm(`Signing out cancels ${running === 1 ? "the upload" : `${running} uploads`} in progress. Sign out?`)) {
    return;
  }
  signOutButton.disabled = true;
  try {
    await cancelAllUploads();
    await api.signOut();
    clearError();
    showSignedOut();
  } catch (error) {
    showError(`Could not sign out: ${messageOf(error)}`);
  } finally {
    signOutButton.disabled = false;
  }
}

async function start(): Promise<void> {
  setUpAuthView(showSignedIn);
  setUpFilesView();
  signOutButton.addEventListener("click", () => void signOut());
  api.onSessionEnded(() => {
    showSignedOut();
    showError("Your session has ended. Please sign in again.");
  });
  try {
    if (await api.hasSession()) showSignedIn();
    else showSignedOut();
  } catch (error) {
    showSignedOut();
    showError(messageOf(error));
  }
}

void start();
