'use strict';
// require('@herald/realtime'): see require.cjs.
module.exports = require('./require.cjs')(() => require('./index.js'), '@herald/realtime');
