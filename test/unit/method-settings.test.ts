/**
 * Each default and each step-count scaling lives once, in the library: `resolveMethodSettings` fills a method's
 * settings and says which were scaled from 50 steps; the attention resolution is chosen by one function; errors
 * name request fields, which a front end renames (the CLI: its flags).
 */
import { describe, expect, it } from 'vitest';
import { chooseAttentionResolution } from '../../src/attention/resolution.js';
import { FieldError } from '../../src/errors.js';
import {
  checkMethodOverrides,
  resolveMethodSettings,
  scaledEditSteps,
  scaledSelectAt,
} from '../../src/methods/registry.js';
import { flagOf } from '../../src/cli/options.js';
import { parseAttributeRegions } from '../../src/methods/suppress-presets.js';

const message = (fn: () => unknown, nameOf?: (field: string) => string): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FieldError);
    return nameOf ? (e as FieldError).messageFor(nameOf) : (e as Error).message;
  }
  throw new Error('no error');
};

describe('resolveMethodSettings', () => {
  it('scales the 50-step defaults to the steps and says which', () => {
    const s = resolveMethodSettings('suppress', 10);
    expect(s.loop.maxIterToAlter).toBe(5);
    expect([...s.loop.thresholds]).toEqual([
      [0, 0.05],
      [2, 0.5],
      [4, 0.8],
    ]);
    expect(s.suppress).toMatchObject({
      mode: 'edit',
      gamma: 0,
      editSteps: 4,
      tokenGroups: true,
      attributeRegions: 'strongest',
      selection: { candidates: 4, atCall: 2, accept: 0.05 },
    });
    // The second version (the default until issue 22): regions from the noun groups, the edit to 18 of 50 steps.
    const v2 = resolveMethodSettings('suppress-v2', 10).suppress!;
    expect(v2).toMatchObject({ editSteps: 4, tokenGroups: true });
    expect(v2.attributeRegions).toBeUndefined();
    expect(s.scaled).toEqual(['maxIterToAlter', 'thresholds', 'editSteps', 'selectAt']);
    expect(resolveMethodSettings('suppress-edit', 10).scaled).toEqual(['maxIterToAlter', 'thresholds', 'editSteps']);
    expect(resolveMethodSettings('suppress', 50).scaled).toEqual([]);
    expect(resolveMethodSettings('attend-and-excite', 10).scaled).toEqual(['maxIterToAlter', 'thresholds']);
    expect(resolveMethodSettings('none', 10)).toMatchObject({ suppress: null, scaled: [] });
    expect([1, 2, 25, 50, 100].map((n) => scaledEditSteps(n))).toEqual([1, 1, 9, 18, 36]);
    expect([1, 2, 25, 50, 100].map(scaledSelectAt)).toEqual([1, 1, 5, 10, 20]);
    expect(resolveMethodSettings('suppress-select', 25).suppress).toMatchObject({ editSteps: 0 });
    expect(resolveMethodSettings('suppress-v1', 25).suppress).toMatchObject({ mode: 'both', editSteps: 5 });
    // The default: v2's 18 of 50 edit steps (9 of 25). suppress-v3 (the default before it): 45 of 50, scaled to 23 of 25.
    expect(resolveMethodSettings('suppress', 50).suppress).toMatchObject({
      editSteps: 18,
      attributeRegions: 'strongest',
    });
    expect(resolveMethodSettings('suppress', 25).suppress).toMatchObject({
      editSteps: 9,
      attributeRegions: 'strongest',
    });
    expect(resolveMethodSettings('suppress-v3', 50).suppress).toMatchObject({
      editSteps: 45,
      attributeRegions: 'strongest',
    });
    expect(resolveMethodSettings('suppress-v3', 25).suppress).toMatchObject({
      editSteps: 23,
      attributeRegions: 'strongest',
    });
  });

  it('--attribute-regions: on, strongest or off, else a one-line error naming the flag', () => {
    expect(['on', 'Strongest', 'off'].map(parseAttributeRegions)).toEqual([true, 'strongest', false]);
    expect(() => parseAttributeRegions('max')).toThrow('--attribute-regions must be on, strongest or off, got "max"');
  });

  it('keeps what is given, unscaled', () => {
    const s = resolveMethodSettings('suppress-edit', 10, {
      loop: { maxIterToAlter: 7, thresholds: new Map([[1, 0.3]]) },
      editSteps: 4,
      gamma: 0.5,
      weights: { even: 0 },
    });
    expect(s.loop.maxIterToAlter).toBe(7);
    expect([...s.loop.thresholds]).toEqual([[1, 0.3]]);
    expect(s.suppress).toMatchObject({ mode: 'edit', gamma: 0.5, editSteps: 4 });
    expect(s.suppress!.weights.even).toBe(0);
    expect(s.suppress!.weights.suppress).toBe(1);
    expect(s.scaled).toEqual([]);
  });

  it('refuses overrides the method cannot use, naming the field (the CLI names its flag)', () => {
    expect(message(() => checkMethodOverrides('attend-and-excite', { mode: 'edit' }))).toBe(
      'mode only applies to the suppress methods (method suppress, suppress-loss, ...)',
    );
    expect(message(() => checkMethodOverrides('none', { loop: { scaleFactor: 3 } }), flagOf)).toBe(
      '--scale-factor only applies to a guidance --method (attend-and-excite, suppress, ...)',
    );
    expect(message(() => checkMethodOverrides('magic', {}))).toMatch(/^method: unknown method 'magic'/);
  });
});

describe('chooseAttentionResolution', () => {
  const sd = [
    [64, 64],
    [32, 32],
    [16, 16],
  ] as const;
  it("prefers diffusers' 16x16, then latent/4, then the UNet's middle resolution", () => {
    expect(chooseAttentionResolution(sd, 64, 64)).toEqual([16, 16]);
    expect(chooseAttentionResolution(sd.slice(0, 2), 128, 128)).toEqual([32, 32]);
    expect(
      chooseAttentionResolution(
        [
          [40, 40],
          [20, 20],
          [10, 10],
        ],
        40,
        40,
      ),
    ).toEqual([10, 10]);
    expect(chooseAttentionResolution([[6, 6]], 48, 48)).toEqual([6, 6]);
  });

  it('without the UNet (a method built on its own): latent/4', () => {
    expect(chooseAttentionResolution(null, 32, 24)).toEqual([8, 6]);
    expect(chooseAttentionResolution(null, 32, 24, [4, 4])).toEqual([4, 4]);
  });

  it('a given resolution must be one the UNet has', () => {
    expect(chooseAttentionResolution(sd, 64, 64, [32, 32])).toEqual([32, 32]);
    expect(message(() => chooseAttentionResolution(sd, 64, 64, [8, 8]), flagOf)).toBe(
      '--attn-res 8x8: the UNet has no cross-attention at that size for this image (it has: 64x64, 32x32, 16x16)',
    );
  });
});
