/**
 * Share links and the quota (/api/v2, see /docs): calls made with api.ts's `call`, so they
 * refresh the session on 401 like every other call.
 */
import { call } from "./api";

export interface Quota {
  /** Uploaded files and uploads in progress. */
  usedBytes: number;
  /** Of usedBytes, uploads in progress (counted with their declared size). */
  uploadingBytes: number;
  /** null: unlimited. */
  limitBytes: number | null;
}

export function quota(): Promise<Quota> {
  return call("GET", "/api/v2/quota");
}

export interface NewLink {
  expiresInSeconds?: number;
  password?: string;
  maxDownloads?: number;
}

export interface CreatedLink {
  linkId: string;
  /** Shown once: the server keeps only a hash of it. */
  url: string;
  expiresAt: string;
  maxDownloads: number | null;
  passwordProtected: boolean;
}

export interface ShareLink {
  linkId: string;
  fileId: string;
  createdAt: string;
  expiresAt: string;
  maxDownloads: number | null;
  downloadCount: number;
  passwordProtected: boolean;
}

function linksPath(fileId: string): string {
  return `/api/v2/files/${encodeURIComponent(fileId)}/links`;
}

export function createLink(fileId: string, link: NewLink): Promise<CreatedLink> {
  return call("POST", linksPath(fileId), link);
}

export async function listLinks(fileId: string): Promise<ShareLink[]> {
  return (await call<{ links: ShareLink[] }>("GET", linksPath(fileId))).links;
}

/** Revokes a link: it stops working at once (204). */
export function revokeLink(linkId: string): Promise<unknown> {
  return call("DELETE", `/api/v2/links/${encodeURIComponent(linkId)}`);
}

/** "active", "expired" or "used up". */
export function linkState(link: ShareLink, now = Date.now()): "active" | "expired" | "used up" {
  if (new Date(link.expiresAt).getTime() <= now) return "expired";
  if (link.maxDownloads !== null && link.downloadCount >= link.maxDownloads) return "used up";
  return "active";
}
