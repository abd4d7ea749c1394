export { releaseWorkflow, progressQuery } from './release';
export { unitWorkflow } from './unit';
export { publishWorkflow, publishProgressQuery } from './publish';
export { exportSubsetWorkflow } from './export';
export { subsetWorkflow } from './subset';
export { fitTaxonomyWorkflow } from './taxonomy';
