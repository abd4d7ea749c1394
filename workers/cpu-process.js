// A child process of the cpu pool's processes backend (BIOMEDICA_CPU_ISOLATION=processes,
// activities/common/cpu-processes.ts): the TypeScript sources through tsx, as the parent runs them, then the tasks it
// sends, one at a time (activities/cpu-tasks.ts). sharp is loaded by this process's main thread, which lives as long
// as the process, so lovell/sharp#2263 (glibc unloading libvips with the last thread that used it) does not arise; its
// concurrency is 1 as in the parent's threads: the parallelism is the processes, one per core.
require('tsx/cjs/api').register();
require('sharp').concurrency(1);
require('../activities/cpu-tasks.ts').serveCpuProcess();
