module.exports = {
  testEnvironment: 'jsdom',
  // @herald/realtime is ES modules: babel-jest compiles it like your own code.
  transformIgnorePatterns: ['/node_modules/(?!@herald/realtime/)'],
};
