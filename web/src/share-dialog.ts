/**
 * The share dialog of an uploaded file: make a link (expiry, optional password and
 * download limit), copy it (it is shown only once: the server keeps only a hash), and see
 * the file's links with their downloads, each with Revoke.
 *
 * A native <dialog> opened modally: it keeps the focus inside, Escape closes it, and the
 * focus goes back to the Share button that opened it.
 */
import type { StoredFile } from "./api";
import { messageOf } from "./api";
import { byId, element } from "./dom";
import { formatDate } from "./format";
import { announce } from "./notices";
import { createLink, linkState, listLinks, revokeLink, type NewLink, type ShareLink } from "./share-api";

const dialog = byId<HTMLDialogElement>("share-dialog");
const fileName = byId("share-file");
const form = byId<HTMLFormElement>("share-form");
const expires = byId<HTMLSelectElement>("share-expires");
const password = byId<HTMLInputElement>("share-password");
const maxDownloads = byId<HTMLInputElement>("share-max");
const createButton = byId<HTMLButtonElement>("share-create");
const result = byId("share-result");
const urlField = byId<HTMLInputElement>("share-url");
const copyButton = byId<HTMLButtonElement>("share-copy");
const errorBox = byId("share-error");
const linkList = byId<HTMLUListElement>("share-links");
const noLinks = byId("share-links-empty");

let current: StoredFile | null = null;
let opener: HTMLElement | null = null;

function showDialogError(message: string): void {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function describeLink(link: ShareLink): string {
  const downloads = link.maxDownloads === null
    ? `${link.downloadCount} ${link.downloadCount === 1 ? "download" : "downloads"}`
    : `${link.downloadCount} of ${link.maxDownloads} downloads`;
  const parts = [`Expires ${formatDate(link.expiresAt)}`, downloads];
  if (link.passwordProtected) parts.push("password");
  return parts.join(" · ");
}

const STATE_LABELS = { active: "Active", expired: "Expired", "used up": "Used up" } as const;

function renderLinks(links: ShareLink[]): void {
  noLinks.hidden = links.length > 0;
  linkList.replaceChildren(...links.map((link) => {
    const item = element("li", "share-link");
    item.dataset.linkId = link.linkId;
    const state = linkState(link);
    item.dataset.state = state;
    const details = element("span", "share-link-details", describeLink(link));
    const badge = element("span", "badge", STATE_LABELS[state]);
    badge.dataset.status = state === "active" ? "UPLOADED" : "FAILED";
    const revoke = element("button", "button danger", "Revoke");
    revoke.type = "button";
    revoke.setAttribute("aria-label", `Revoke the link created ${formatDate(link.createdAt)}`);
    revoke.addEventListener("click", () => void revokeOne(link, revoke));
    item.append(details, badge, revoke);
    return item;
  }));
}

async function loadLinks(): Promise<void> {
  if (!current) return;
  const fileId = current.fileId;
  try {
    const links = await listLinks(fileId);
    if (current?.fileId === fileId) renderLinks(links);
  } catch (error) {
    showDialogError(`Could not load the links: ${messageOf(error)}`);
  }
}

async function revokeOne(link: ShareLink, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await revokeLink(link.linkId);
    announce("The link was revoked: it no longer works.");
    if (urlField.dataset.linkId === link.linkId) {
      result.hidden = true;
      urlField.value = "";
    }
  } catch (error) {
    showDialogError(`Could not revoke the link: ${messageOf(error)}`);
    button.disabled = false;
  }
  await loadLinks();
}

function newLink(): NewLink | string {
  const link: NewLink = { expiresInSeconds: Number(expires.value) };
  if (password.value) link.password = password.value;
  const limit = maxDownloads.value.trim();
  if (limit) {
    const count = Number(limit);
    if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
      return "Maximum downloads must be a whole number from 1 to 1,000,000.";
    }
    link.maxDownloads = count;
  }
  return link;
}

async function create(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  if (!current) return;
  const link = newLink();
  if (typeof link === "string") {
    showDialogError(link);
    maxDownloads.focus();
    return;
  }
  showDialogError("");
  createButton.disabled = true;
  try {
    const created = await createLink(current.fileId, link);
    urlField.value = created.url;
    urlField.dataset.linkId = created.linkId;
    copyButton.textContent = "Copy link";
    result.hidden = false;
    password.value = "";
    urlField.focus();
    urlField.select();
    announce("Link created. Copy it now: it is shown only once.");
  } catch (error) {
    showDialogError(`Could not create the link: ${messageOf(error)}`);
  } finally {
    createButton.disabled = false;
  }
  await loadLinks();
}

async function copy(): Promise<void> {
  try {
    await navigator.clipboard.writeText(urlField.value);
  } catch {
    // No clipboard API here (an insecure origin): the selection and the old command.
    urlField.select();
    if (!document.execCommand("copy")) {
      showDialogError("Could not copy: select the link and copy it yourself.");
      return;
    }
  }
  copyButton.textContent = "Copied";
  announce("The link is copied.");
}

export function openShareDialog(file: StoredFile, from: HTMLElement | null): void {
  current = file;
  opener = from;
  fileName.textContent = file.fileName;
  form.reset();
  result.hidden = true;
  urlField.value = "";
  delete urlField.dataset.linkId;
  showDialogError("");
  linkList.replaceChildren();
  noLinks.hidden = true;
  dialog.showModal();
  void loadLinks();
}

export function closeShareDialog(): void {
  if (dialog.open) dialog.close();
}

export function setUpShareDialog(): void {
  form.addEventListener("submit", (event) => void create(event));
  copyButton.addEventListener("click", () => void copy());
  byId("share-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    current = null;
    urlField.value = ""; // the link is not kept on the page once the dialog is closed
    opener?.focus();
    opener = null;
  });
}
