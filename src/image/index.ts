export * from './image.js';
export * from './png.js';
export * from './convert.js';
export * from './resize.js';
export * from './colormap.js';
export * from './font.js';
export * from './grid.js';
export * from './filter.js';
