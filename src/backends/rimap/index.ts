// rimap: authenticate against a remote IMAP server (Cyrus auth_rimap.c, plus
// TLS, safe literals and several servers). See backend.ts.
export { createRimapBackend, loadCa, RimapBackend, REPLY } from './backend';
export { parseRimapOption, RimapOptionError } from './options';
