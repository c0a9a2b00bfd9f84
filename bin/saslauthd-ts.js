#!/usr/bin/env node
'use strict';
// Thin launcher. The thread pool runs crypt(3) and PAM; size it before first use.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '8';
require('../dist/src/cli/saslauthd.js').main(process.argv.slice(2));
