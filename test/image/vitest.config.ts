// `npm run test:image`: builds the image with podman and runs each component from it.
// Separate from `npm test` because it installs podman and builds an image (about a minute).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/image/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
  },
});
