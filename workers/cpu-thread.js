// A thread of the cpu pool (piscina, activities/common/threads.ts): the TypeScript sources through tsx, as the
// main thread runs them, then one task at a time (activities/cpu-tasks.ts).
require('tsx/cjs/api').register();
module.exports = require('../activities/cpu-tasks.ts').runCpuTask;
