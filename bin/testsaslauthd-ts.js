#!/usr/bin/env node
'use strict';
// Thin launcher for the test client.
require('../dist/src/cli/testsaslauthd.js').main(process.argv.slice(2));
