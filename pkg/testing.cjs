'use strict';
// require('@herald/realtime/testing'): see require.cjs.
module.exports = require('./require.cjs')(() => require('./testing.js'), '@herald/realtime/testing');
