/**
 * The signed-in page: a drop zone with a file picker, and one list of the user's files in
 * which this page's uploads show their progress, speed and a Cancel button.
 *
 * The list is the server's, a page at a time (file-pages.ts: the newest 100, then 100 more
 * each time the user reaches the end of the list or presses "Load more"), filtered by name
 * on the server from the search box. Status changes arrive live from the event
 * stream (live-status.ts), so a status turns UPLOADED without reloading the page; the list
 * (as many files as are shown) is re-read whenever the stream opens (it replays nothing)
 * and polled while any file is still uploading: often when the stream is down, rarely as a
 * safety net when it is up.
 * Rows are updated in place (keyed by file id), so updates never take the keyboard focus
 * away.
 */
import * as api from "./api";
import { messageOf, type StoredFile } from "./api";
import { byId, element } from "./dom";
import { filesAfter, newestFiles, PAGE_SIZE } from "./file-pages";
import { formatBytes, formatDate, formatSpeed } from "./format";
import { isLive, startLiveStatus, stopLiveStatus, type FileEvent } from "./live-status";
import { announce, showError } from "./notices";
import { hideQuota, refreshQuota } from "./quota-bar";
import { closeShareDialog, openShareDialog, setUpShareDialog } from "./share-dialog";
import { Upload, type UploadPhase } from "./upload";

const POLL_INTERVAL_MS = 1_500;
const SEARCH_DELAY_MS = 250;
// While the event stream is open it brings every change: polling is only a safety net.
const LIVE_POLL_INTERVAL_MS = 30_000;

const view = byId("files-view");
const dropZone = byId("drop-zone");
const fileInput = byId<HTMLInputElement>("file-input");
const list = byId<HTMLUListElement>("file-list");
const emptyNote = byId("files-empty");
const search = byId<HTMLInputElement>("file-search");
const noMatchNote = byId("files-no-match");
const moreButton = byId<HTMLButtonElement>("files-more");

let visible = false;
let listed = false; // the first listing arrived
let files: StoredFile[] = [];
const uploads = new Map<string, Upload>();
// Paging: how many files the user asked to see, where the next ones start (null: no more),
// and the name filter the server applies (the search box's longest word; the page checks
// every word, so a name must hold them all, in any case, as `dropfile ls` has it).
let wanted = PAGE_SIZE;
let nextPageToken: string | null = null;
let nameFilter = "";

// --- rows ----------------------------------------------------------------------------------

interface Row {
  item: HTMLLIElement;
  name: HTMLElement;
  meta: HTMLElement;
  badge: HTMLElement;
  progressBox: HTMLElement;
  progress: HTMLProgressElement;
  progressText: HTMLElement;
  message: HTMLElement;
  download: HTMLButtonElement;
  share: HTMLButtonElement;
  remove: HTMLButtonElement;
  cancel: HTMLButtonElement;
}

interface RowState {
  name: string;
  meta: string;
  status: "UPLOADING" | "UPLOADED" | "FAILED";
  label: string;
  progress: { percent: number; text: string } | null;
  message: string;
  failed: boolean;
  canDownload: boolean;
  canShare: boolean;
  canDelete: boolean;
  canCancel: boolean;
}

const rows = new Map<string, Row>();

const ACTIVE_LABELS: Partial<Record<UploadPhase, string>> = {
  starting: "Starting…", uploading: "Uploading", finishing: "Finishing…", cancelling: "Cancelling…",
};

function describe(file: StoredFile | undefined, upload: Upload | undefined): RowState {
  const name = file?.fileName ?? upload!.file.name;
  const size = file?.size ?? upload!.file.size;
  const meta = [formatBytes(size), file ? formatDate(file.createdAt) : ""].filter(Boolean).join(" · ");
  const state: RowState = {
    name, meta, status: file?.status ?? "UPLOADING", label: "Uploading", progress: null,
    message: "", failed: false, canDownload: false, canShare: false, canDelete: true,
    canCancel: false,
  };
  if (upload?.active) {
    const percent = size ? Math.min(100, (upload.sent / size) * 100) : 100;
    const speed = upload.phase === "uploading" && upload.speed ? ` · ${formatSpeed(upload.speed)}` : "";
    return { ...state, status: "UPLOADING", label: ACTIVE_LABELS[upload.phase] ?? "Uploading",
             progress: { percent, text: `${formatBytes(upload.sent)} of ${formatBytes(size)}${speed}` },
             message: upload.note, canDelete: false, canCancel: upload.cancellable };
  }
  if (upload?.phase === "failed") {
    return { ...state, status: "FAILED", label: "Failed", message: upload.error, failed: true };
  }
  if (!file) return state;
  switch (file.status) {
    case "UPLOADED":
      return { ...state, label: "Uploaded", canDownload: true, canShare: true };
    case "FAILED":
      return { ...state, label: "Failed" };
    default:
      // Completed here, not yet confirmed by storage (its event arrives within seconds).
      return { ...state, label: upload?.phase === "done" ? "Confirming…" : "Uploading" };
  }
}

function button(text: string, action: string, className: string): HTMLButtonElement {
  const node = element("button", `button ${className}`, text);
  node.type = "button";
  node.dataset.action = action;
  return node;
}

function createRow(fileId: string): Row {
  const item = element("li", "file");
  item.dataset.fileId = fileId;
  const main = element("div", "file-main");
  const name = element("span", "file-name");
  const meta = element("span", "file-meta");
  main.append(name, meta);
  const badge = element("span", "badge");
  const progressBox = element("div", "file-progress");
  const progress = element("progress");
  progress.max = 100;
  const progressText = element("span", "progress-text");
  progressBox.append(progress, progressText);
  const message = element("p", "file-message");
  const actions = element("div", "file-actions");
  const download = button("Download", "download", "secondary");
  const share = button("Share", "share", "secondary");
  const remove = button("Delete", "delete", "danger");
  const cancel = button("Cancel", "cancel", "secondary");
  actions.append(download, share, cancel, remove);
  item.append(main, badge, actions, progressBox, message);
  return { item, name, meta, badge, progressBox, progress, progressText, message, download,
           share, remove, cancel };
}

function updateRow(row: Row, state: RowState): void {
  row.item.dataset.status = state.status;
  row.name.textContent = state.name;
  row.name.title = state.name;
  row.meta.textContent = state.meta;
  row.badge.textContent = state.label;
  row.badge.dataset.status = state.status;
  row.progressBox.hidden = !state.progress;
  if (state.progress) {
    row.progress.value = state.progress.percent;
    row.progress.setAttribute("aria-label", `Upload progress of ${state.name}`);
    row.progressText.textContent = state.progress.text;
  }
  row.message.hidden = !state.message;
  row.message.textContent = state.message;
  row.message.classList.toggle("error", state.failed);
  row.download.hidden = !state.canDownload;
  row.download.setAttribute("aria-label", `Download ${state.name}`);
  row.share.hidden = !state.canShare;
  row.share.setAttribute("aria-label", `Share ${state.name}`);
  row.remove.hidden = !state.canDelete;
  row.remove.setAttribute("aria-label", `Delete ${state.name}`);
  row.cancel.hidden = !state.canCancel;
  row.cancel.setAttribute("aria-label", `Cancel the upload of ${state.name}`);
}

/** This page's uploads the server does not list yet come first (newest first), then the
 * server's list (newest first). */
function orderedIds(): string[] {
  const listedIds = new Set(files.map((file) => file.fileId));
  const filter = nameFilter.toLocaleLowerCase();
  const pending = [...uploads.entries()]
    .filter(([id, upload]) => !listedIds.has(id)
      && upload.file.name.toLocaleLowerCase().includes(filter))
    .map(([id]) => id).reverse();
  return [...pending, ...files.map((file) => file.fileId)];
}

/** The search box's words: a file is shown when its name holds every one, in any case. */
function searchWords(): string[] {
  return search.value.toLocaleLowerCase().split(/\s+/).filter(Boolean);
}

function render(): void {
  const byIdOf = new Map(files.map((file) => [file.fileId, file]));
  const all = orderedIds();
  const words = searchWords();
  const nameOf = (id: string) => byIdOf.get(id)?.fileName ?? uploads.get(id)?.file.name ?? "";
  const ids = words.length
    ? all.filter((id) => words.every((word) => nameOf(id).toLocaleLowerCase().includes(word)))
    : all;
  for (const [id, row] of rows) {
    if (!ids.includes(id)) {
      row.item.remove();
      rows.delete(id);
    }
  }
  ids.forEach((id, index) => {
    let row = rows.get(id);
    if (!row) {
      row = createRow(id);
      rows.set(id, row);
    }
    updateRow(row, describe(byIdOf.get(id), uploads.get(id)));
    // Moving a node blurs what it holds, so only rows out of place move.
    if (list.children[index] !== row.item) list.insertBefore(row.item, list.children[index] ?? null);
  });
  const empty = listed && ids.length === 0;
  emptyNote.hidden = !empty || words.length > 0;
  noMatchNote.hidden = !empty || words.length === 0;
  noMatchNote.textContent = noMatchNote.hidden ? "" : `No files match “${search.value.trim()}”.`;
  moreButton.hidden = !listed || nextPageToken === null;
}

let renderQueued = false;
let progressTimer: ReturnType<typeof setTimeout> | undefined;

/** Changes come many times a second: draw at most once a frame. */
function scheduleRender(): void {
  clearTimeout(progressTimer);
  progressTimer = undefined;
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (visible) render();
  });
}

/** Bytes sent moving (every part's progress events) are drawn four times a second, not
 * every frame: drawing them 60 times a second cost Chromium ~0.6 CPU-seconds per 256 MiB
 * uploaded (renderer and compositor), CPU the upload itself needs where the store shares
 * the machine (bench/README.md, Browser). Phase changes are still drawn at once. */
const PROGRESS_DRAW_MS = 250;

function scheduleProgressRender(): void {
  if (renderQueued || progressTimer !== undefined) return;
  progressTimer = setTimeout(() => {
    progressTimer = undefined;
    scheduleRender();
  }, PROGRESS_DRAW_MS);
}

// --- the list from the server, polled while something is uploading ---------------------------

let pollTimer: ReturnType<typeof setTimeout> | undefined;
let loading: Promise<void> | null = null;
let reloadAgain = false;

function somethingUploading(): boolean {
  return files.some((file) => file.status === "UPLOADING")
    || [...uploads.values()].some((upload) => upload.active);
}

function schedulePoll(): void {
  clearTimeout(pollTimer);
  if (visible && somethingUploading()) {
    pollTimer = setTimeout(() => void reload(), isLive() ? LIVE_POLL_INTERVAL_MS : POLL_INTERVAL_MS);
  }
}

// --- live status from the event stream --------------------------------------------------------

// What the stream said of files that settled (UPLOADED, FAILED) or went (DELETED): a status
// never goes back to UPLOADING, so a list fetched before the change but read after it must
// not undo it.
const settled = new Map<string, FileEvent>();

function withLiveStatus(listedFiles: StoredFile[]): StoredFile[] {
  return listedFiles
    .filter((file) => settled.get(file.fileId)?.status !== "DELETED")
    .map((file) => {
      const live = settled.get(file.fileId);
      return live && live.status !== "DELETED" && file.status === "UPLOADING"
        ? { ...file, status: live.status, size: live.size } : file;
    });
}

function applyEvent(event: FileEvent): void {
  if (!visible) return;
  if (event.status === "UPLOADING") settled.delete(event.fileId);
  else settled.set(event.fileId, event);
  if (event.status === "DELETED" && !uploads.get(event.fileId)?.active) {
    uploads.delete(event.fileId); // deleted elsewhere: nothing of it stays on this page
  }
  const known = files.some((file) => file.fileId === event.fileId);
  if (!known) {
    // Started elsewhere (another tab or device), or not listed yet: the list tells all.
    if (event.status === "DELETED") render();
    else void reload();
    return;
  }
  const next = withLiveStatus(files);
  announceArrivals(next);
  files = next;
  forgetSettledUploads();
  render();
  schedulePoll();
  void refreshQuota(); // an upload that settled or a file that went changes the usage
}

function liveStatusChanged(connected: boolean): void {
  if (!visible) return;
  if (connected) void reload(); // catch up on what happened while no stream was open
  else schedulePoll(); // the stream is down: poll as often as before it existed
}

function announceArrivals(next: StoredFile[]): void {
  const before = new Map(files.map((file) => [file.fileId, file.status]));
  for (const file of next) {
    if (before.get(file.fileId) === "UPLOADING" && file.status === "UPLOADED") {
      announce(`${file.fileName} is uploaded.`);
    }
  }
}

/** Forgets this page's uploads once the server's list tells their whole story. */
function forgetSettledUploads(): void {
  for (const [id, upload] of uploads) {
    const file = files.find((candidate) => candidate.fileId === id);
    if (upload.phase === "cancelled" || (upload.phase === "done" && file && file.status !== "UPLOADING")) {
      uploads.delete(id);
    }
  }
}

async function reload(): Promise<void> {
  if (loading) {
    reloadAgain = true;
    return loading;
  }
  loading = (async () => {
    try {
      const filter = nameFilter;
      const listing = await newestFiles(Math.max(PAGE_SIZE, wanted), filter);
      if (!visible) return;
      if (filter !== nameFilter) {
        reloadAgain = true; // the search changed meanwhile: this list is of another filter
        return;
      }
      const next = withLiveStatus(listing.files);
      announceArrivals(next);
      files = next;
      nextPageToken = listing.nextPageToken;
      listed = true;
      forgetSettledUploads();
      render();
      void refreshQuota();
    } catch (error) {
      // A session that ended: the sign-in form says so.
      if (visible && !(error instanceof api.ApiError && error.signedOut)) {
        showError(`Could not load your files: ${messageOf(error)}`);
      }
    } finally {
      loading = null;
      if (reloadAgain && visible) {
        reloadAgain = false;
        void reload();
      } else {
        schedulePoll();
        requestAnimationFrame(loadMoreIfInView);
      }
    }
  })();
  return loading;
}

// --- more files, and the name filter -------------------------------------------------------

let loadingMore = false;
// How near the bottom of the window the end of the list must come to load more.
const SCROLL_MARGIN_PX = 200;

/** Loads the next page when the end of the list is on screen (or nearly), as laid out now:
 * an IntersectionObserver's last word may predate the rows just added. */
function loadMoreIfInView(): void {
  if (nextPageToken === null || moreButton.hidden) return;
  if (moreButton.getBoundingClientRect().top < window.innerHeight + SCROLL_MARGIN_PX) {
    void loadMore();
  }
}

/** The next page after the files shown, appended to them. */
async function loadMore(): Promise<void> {
  const token = nextPageToken;
  if (!visible || loadingMore || loading || token === null) return;
  loadingMore = true;
  moreButton.disabled = true;
  const filter = nameFilter;
  try {
    const listing = await filesAfter(token, filter);
    if (!visible || filter !== nameFilter || token !== nextPageToken) return; // overtaken
    const shown = new Set(files.map((file) => file.fileId));
    files = [...files, ...withLiveStatus(listing.files.filter((file) => !shown.has(file.fileId)))];
    wanted = Math.max(wanted, files.length);
    nextPageToken = listing.nextPageToken;
    render();
    announce(`${listing.files.length} more files shown.`);
  } catch (error) {
    if (visible && !(error instanceof api.ApiError && error.status === 401)) {
      showError(`Could not load more files: ${messageOf(error)}`);
    }
  } finally {
    loadingMore = false;
    moreButton.disabled = false;
    requestAnimationFrame(loadMoreIfInView); // once the new rows are laid out
  }
}

let searchTimer: ReturnType<typeof setTimeout> | undefined;

/** A new search: the newest files that match it, from the server (after a short pause in
 * the typing, so that a word is one request, not one per letter). */
function searchChanged(): void {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const filter = search.value.trim().split(/\s+/).reduce((longest, word) =>
      word.length > longest.length ? word : longest, "");
    if (filter === nameFilter) return;
    nameFilter = filter;
    wanted = PAGE_SIZE;
    nextPageToken = null;
    void reload();
  }, SEARCH_DELAY_MS);
}

// --- uploading -------------------------------------------------------------------------------

function addFiles(chosen: FileList | null): void {
  if (!chosen?.length) return;
  for (const file of Array.from(chosen)) {
    const upload = new Upload(file, (_, progressOnly) =>
      progressOnly ? scheduleProgressRender() : scheduleRender());
    uploads.set(upload.fileId, upload);
    void upload.start().then(() => uploadEnded(upload));
  }
  announce(chosen.length === 1 ? `Uploading ${chosen[0].name}.` : `Uploading ${chosen.length} files.`);
  render();
  schedulePoll();
}

function uploadEnded(upload: Upload): void {
  if (!visible) return;
  const name = upload.file.name;
  if (upload.phase === "failed") showError(`The upload of ${name} failed: ${upload.error}`);
  if (upload.phase === "cancelled") announce(`The upload of ${name} was cancelled.`);
  if (upload.phase === "done") announce(`${name} is sent; storage is confirming it.`);
  void reload();
}

// --- actions ---------------------------------------------------------------------------------

async function download(file: StoredFile): Promise<void> {
  try {
    const url = await api.downloadUrl(file.s3Key);
    // The URL answers with Content-Disposition: attachment, so the page stays where it is.
    const link = element("a");
    link.href = url;
    link.rel = "noopener";
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    showError(`Could not download ${file.fileName}: ${messageOf(error)}`);
  }
}

async function remove(fileId: string): Promise<void> {
  const file = files.find((candidate) => candidate.fileId === fileId);
  if (!file) {
    uploads.delete(fileId); // a failed upload the server never listed: only ours to forget
    render();
    return;
  }
  if (!window.confirm(`Delete “${file.fileName}”? This cannot be undone.`)) return;
  try {
    await api.deleteFile(fileId);
    uploads.delete(fileId);
    files = files.filter((candidate) => candidate.fileId !== fileId);
    render();
    announce(`${file.fileName} was deleted.`);
  } catch (error) {
    showError(`Could not delete ${file.fileName}: ${messageOf(error)}`);
  }
  void reload();
}

function onListClick(event: MouseEvent): void {
  const target = (event.target as HTMLElement).closest<HTMLButtonElement>("button[data-action]");
  const fileId = target?.closest<HTMLElement>("li.file")?.dataset.fileId;
  if (!target || !fileId) return;
  const action = target.dataset.action;
  if (action === "cancel") void uploads.get(fileId)?.cancel();
  if (action === "delete") void remove(fileId);
  if (action === "download") {
    const file = files.find((candidate) => candidate.fileId === fileId);
    if (file) void download(file);
  }
  if (action === "share") {
    const file = files.find((candidate) => candidate.fileId === fileId);
    if (file) openShareDialog(file, target);
  }
}

function carriesFiles(event: DragEvent): boolean {
  return visible && (event.dataTransfer?.types.includes("Files") ?? false);
}

export function setUpFilesView(): void {
  list.addEventListener("click", onListClick);
  search.addEventListener("input", searchChanged);
  setUpShareDialog();
  moreButton.addEventListener("click", () => void loadMore());
  // Infinite scroll: reaching the end of the list (the button) loads the next page.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMoreIfInView();
  }, { rootMargin: `${SCROLL_MARGIN_PX}px` }).observe(moreButton);
  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = ""; // choosing the same file again is a new upload
  });
  // The whole page takes dropped files, so a drop just beside the zone is not lost (the
  // browser would otherwise open the file instead).
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer!.dropEffect = "copy";
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dropZone.classList.remove("dragging");
    addFiles(event.dataTransfer!.files);
  });
  window.addEventListener("beforeunload", (event) => {
    if (activeUploads() > 0) event.preventDefault(); // leaving would abandon them
  });
}

export function showFilesView(): void {
  visible = true;
  view.hidden = false;
  void reload();
  startLiveStatus({ onEvent: applyEvent, onConnected: liveStatusChanged });
}

/** Stops polling and forgets everything shown (after sign-out or an ended session). */
export function hideFilesView(): void {
  visible = false;
  view.hidden = true;
  stopLiveStatus();
  clearTimeout(pollTimer);
  settled.clear();
  files = [];
  listed = false;
  wanted = PAGE_SIZE;
  nextPageToken = null;
  nameFilter = "";
  search.value = "";
  clearTimeout(searchTimer);
  noMatchNote.hidden = true;
  moreButton.hidden = true;
  uploads.clear();
  rows.clear();
  list.replaceChildren();
  search.value = "";
  noMatchNote.hidden = true;
  hideQuota();
  closeShareDialog();
}

export function activeUploads(): number {
  return [...uploads.values()].filter((upload) => upload.active).length;
}

export async function cancelAllUploads(): Promise<void> {
  await Promise.all([...uploads.values()].map((upload) => upload.cancel()));
}
