"""Share links: the owner of an uploaded file hands it to anyone holding a link, until the
link expires, is revoked or runs out of downloads.

- links.py: the rules (`Sharing`): who may create, list, revoke and resolve a link;
- store.py: its SQL (`share_links`; a download counted in one conditional UPDATE);
- throttle.py: guesses at tokens and passwords limited in Redis, per address and per link;
- servicer.py: ShareService (users) and ShareInternalService (the gateway's public route);
- server.py: its wiring beside UploadService (its own small pool and presigner).
"""
