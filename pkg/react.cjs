'use strict';
// require('@herald/realtime/react'): see require.cjs.
module.exports = require('./require.cjs')(() => require('./react.js'), '@herald/realtime/react');
