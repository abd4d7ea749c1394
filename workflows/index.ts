export { releaseWorkflow, progressQuery } from './release';
export { unitWorkflow } from './unit';
