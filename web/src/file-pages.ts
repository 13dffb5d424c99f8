/**
 * The file list a page at a time (GET /api/v2/files, newest first): the page shows the
 * newest files first and asks for more as the user scrolls to the end of the list (or
 * presses "Load more"). A name filter is the server's: it finds matches among every file,
 * not only those shown.
 *
 * Page tokens continue exactly after the last file of the previous page, so a page loaded
 * later never repeats or skips a file, whatever was uploaded or deleted meanwhile.
 */
import * as api from "./api";
import type { StoredFile } from "./api";

/** Files the page shows at first, and how many more each "Load more" brings. */
export const PAGE_SIZE = 100;
/** The server's largest page. */
const MAX_PAGE_SIZE = 1000;

export interface Listing {
  files: StoredFile[];
  /** Where the next files start; null when these are all. */
  nextPageToken: string | null;
}

/** The newest `count` files whose names contain `name` (every file when empty), in as few
 * requests as the server allows (pages of up to 1,000). */
export async function newestFiles(count: number, name: string): Promise<Listing> {
  const files: StoredFile[] = [];
  let token: string | null = null;
  do {
    const page: api.FilePage = await api.listFilesPage({
      pageSize: Math.min(MAX_PAGE_SIZE, count - files.length), pageToken: token, name,
    });
    files.push(...page.files);
    token = page.nextPageToken;
  } while (token && files.length < count);
  return { files, nextPageToken: token };
}

/** The next PAGE_SIZE files after `token` (which a listing with the same `name` gave). */
export async function filesAfter(token: string, name: string): Promise<Listing> {
  const page = await api.listFilesPage({ pageSize: PAGE_SIZE, pageToken: token, name });
  return { files: page.files, nextPageToken: page.nextPageToken };
}
