// Mechanism registry: -a NAME picks a factory here. Each backend is one file.
import type { BackendFactory } from './backend';
import { createShadowBackend } from './shadow';
import { createLdapBackend } from './ldap';
import { createPamBackend } from './pam';
import { createRimapBackend } from './rimap';

export const BACKENDS: Record<string, BackendFactory> = {
  shadow: createShadowBackend,
  ldap: createLdapBackend,
  pam: createPamBackend,
  rimap: createRimapBackend,
};

/** Cyrus mechanisms we know of but do not implement, for a clear refusal. */
export const CYRUS_ONLY = ['getpwent', 'kerberos5', 'sasldb', 'httpform', 'sia', 'dce'];
