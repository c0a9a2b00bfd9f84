#!/usr/bin/node
'use strict';
// Thin launcher for the test client (#!/usr/bin/node: Debian Policy 10.4).
require('../dist/src/cli/testsaslauthd.js').main(process.argv.slice(2));
