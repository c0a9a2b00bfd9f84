#!/usr/bin/node
'use strict';
// Thin launcher. /usr/bin/node, not env: the package runs on the nodejs it
// depends on, whatever PATH says (Debian Policy 10.4). libuv's thread pool
// runs PAM (crypt(3) has the addon's own hashing threads), fs and DNS; size
// it before first use.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '8';
require('../dist/src/cli/saslauthd.js').main(process.argv.slice(2));
