import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isUserError } from '../src/errors.js';
import {
  createSampler,
  defaultSampler,
  loadSchedulerConfig,
  noiseSchedule,
  parseSamplerName,
  resolveSchedulerConfig,
  SAMPLER_NAMES,
  type RawSchedulerConfig,
  type SamplerName,
} from '../src/schedulers/index.js';
import { goldenPath, oracleDir, tinySdDir } from './support/oracle.js';

// ---- a tiny local safetensors reader (F32 / I64 only) ----
interface Golden {
  shape: number[];
  data: Float32Array | number[];
}
function readSafetensors(path: string): Map<string, Golden> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + n;
  const out = new Map<string, Golden>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [s, e] = t.data_offsets;
    const bytes = buf.subarray(base + s, base + e);
    const copy = new ArrayBuffer(bytes.length);
    new Uint8Array(copy).set(bytes);
    if (t.dtype === 'F32') out.set(name, { shape: t.shape, data: new Float32Array(copy) });
    else if (t.dtype === 'I64') out.set(name, { shape: t.shape, data: Array.from(new BigInt64Array(copy), Number) });
    else throw new Error(`unsupported dtype ${t.dtype} for ${name}`);
  }
  return out;
}

const E = readSafetensors(goldenPath('e_schedulers'));
const F = readSafetensors(goldenPath('f_txt2img'));
const g = (name: string, src = E): Golden => {
  const v = src.get(name);
  if (v === undefined) throw new Error(`golden ${name} missing`);
  return v;
};
const f32 = (name: string, src = E): Float32Array => {
  const d = g(name, src).data;
  if (!(d instanceof Float32Array)) throw new Error(`${name} is not float32`);
  return d;
};
const nums = (name: string, src = E): number[] => Array.from(g(name, src).data);

interface ManifestCase {
  id: string;
  tolerance: Record<string, unknown>;
  params: Record<string, { class: string; config: Record<string, unknown>; steps: number }>;
}
const manifest = JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
  cases: ManifestCase[];
};
const eCase = manifest.cases.find((c) => c.id === 'e_schedulers')!;
const tol = eCase.tolerance as { atol: number; rtol: number };

/** The SD-1.5 scheduler_config.json the oracle used: every key it saved that was not a class default. */
const SD15: RawSchedulerConfig = (() => {
  const raw: Record<string, unknown> = {};
  for (const p of Object.values(eCase.params)) {
    const defaults = new Set((p.config['_use_default_values'] as string[]) ?? []);
    for (const [k, v] of Object.entries(p.config)) if (!k.startsWith('_') && !defaults.has(k)) raw[k] = v;
  }
  return raw;
})();

/** The samplers the oracle saved goldens for, and the goldens' names for them. */
const KEY: Partial<Record<SamplerName, string>> = {
  pndm: 'pndm',
  ddim: 'ddim',
  euler: 'euler',
  'euler-a': 'euler_a',
  'dpmpp-2m': 'dpmpp2m',
};

const GOLDEN_SAMPLERS = SAMPLER_NAMES.filter((n) => KEY[n] !== undefined);

/** max |a-b| and whether |a-b| <= atol + rtol*|b| everywhere. */
function compare(a: ArrayLike<number>, b: ArrayLike<number>) {
  expect(a.length).toBe(b.length);
  let maxAbs = 0;
  let ok = true;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= maxAbs)) maxAbs = d;
    if (!(d <= tol.atol + tol.rtol * Math.abs(b[i]!))) ok = false;
  }
  return { maxAbs, ok };
}

const report: Record<string, number> = {};
afterAll(() => {
  if (process.env['S2I_REPORT']) console.log('scheduler max |ours - diffusers|:', JSON.stringify(report, null, 1));
});
function expectClose(label: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  const r = compare(a, b);
  report[label] = Math.max(report[label] ?? 0, r.maxAbs);
  expect(r.ok, `${label}: max |diff| ${r.maxAbs}`).toBe(true);
}

describe('scheduler config (from_config semantics)', () => {
  it('SD-1.5 config resolves per sampler exactly as diffusers did', () => {
    expect(SD15).toMatchObject({ beta_schedule: 'scaled_linear', steps_offset: 1, skip_prk_steps: true });
    expect('timestep_spacing' in SD15).toBe(false);
    for (const name of GOLDEN_SAMPLERS) {
      const p = eCase.params[KEY[name]!]!;
      const c = resolveSchedulerConfig(name, SD15);
      expect(c.className).toBe(p.class);
      for (const [k, v] of Object.entries(p.config)) {
        if (k.startsWith('_') || !c.acceptedKeys.includes(k)) continue;
        const want = v === '-Infinity' ? Number.NEGATIVE_INFINITY : v;
        const field = k.replace(/_([a-z])/g, (_, x: string) => x.toUpperCase()); // JSON key → camelCase field
        expect((c as unknown as Record<string, unknown>)[field], `${name}.${k}`).toEqual(want);
      }
    }
  });

  it('per-class defaults: DDIM clip_sample true, timestep_spacing per class, unknown keys ignored', () => {
    const bare = { beta_schedule: 'scaled_linear', some_future_key: 3 };
    expect(resolveSchedulerConfig('ddim', bare).clipSample).toBe(true);
    expect(resolveSchedulerConfig('ddim', bare).setAlphaToOne).toBe(true);
    expect(resolveSchedulerConfig('pndm', bare).timestepSpacing).toBe('leading');
    expect(resolveSchedulerConfig('euler', bare).timestepSpacing).toBe('linspace');
    expect(resolveSchedulerConfig('dpmpp-2m', bare).timestepSpacing).toBe('linspace');
    // PNDM does not accept clip_sample: a PNDM-saved true is ignored; DDIM honours it.
    expect(resolveSchedulerConfig('pndm', { clip_sample: true }).clipSample).toBe(false);
    expect(resolveSchedulerConfig('ddim', { clip_sample: false }).clipSample).toBe(false);
    expect(resolveSchedulerConfig('euler', { use_karras_sigmas: true }).useKarrasSigmas).toBe(true);
    expect(resolveSchedulerConfig('ddim', { use_karras_sigmas: true }).useKarrasSigmas).toBe(false);
  });

  it('reads Python-JSON configs (bare -Infinity) from a file or a model folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 's2i-sched-'));
    try {
      mkdirSync(join(dir, 'scheduler'));
      const text = '{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "solver_order": 2}';
      writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), text);
      const raw = loadSchedulerConfig(dir);
      expect(defaultSampler(raw)).toBe('dpmpp-2m');
      expect(resolveSchedulerConfig('dpmpp-2m', raw).lambdaMinClipped).toBe(Number.NEGATIVE_INFINITY);
      writeFileSync(join(dir, 'bad.json'), '{"beta_start": ');
      expect(() => loadSchedulerConfig(join(dir, 'bad.json'))).toThrow(/not valid JSON/);
      expect(() => loadSchedulerConfig(join(dir, 'missing.json'))).toThrow(/does not exist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tiny-sd config: PNDM class, saved timestep_spacing "leading" carries over to every sampler', () => {
    const raw = loadSchedulerConfig(tinySdDir);
    expect(defaultSampler(raw)).toBe('pndm');
    expect(resolveSchedulerConfig('euler', raw).timestepSpacing).toBe('leading');
  });

  it('bad names and values are one-line UserErrors naming the field and the valid values', () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(isUserError(e)).toBe(true);
        return (e as Error).message;
      }
      throw new Error('expected a UserError');
    };
    expect(err(() => parseSamplerName('lms'))).toMatch(
      /^sampler: unknown sampler "lms".*pndm, ddim, euler, euler-a, dpmpp-2m/,
    );
    expect(parseSamplerName('Euler_A')).toBe('euler-a');
    expect(parseSamplerName('DPM++2M')).toBe('dpmpp-2m');
    expect(err(() => resolveSchedulerConfig('ddim', { beta_schedule: 'cosine' }))).toMatch(
      /"beta_schedule" must be one of linear, scaled_linear, squaredcos_cap_v2 \(got "cosine"\)/,
    );
    expect(err(() => resolveSchedulerConfig('euler-a', { prediction_type: 'sample' }))).toMatch(
      /"prediction_type" must be one of epsilon, v_prediction/,
    );
    expect(err(() => resolveSchedulerConfig('ddim', { timestep_spacing: 'even' }))).toMatch(/"timestep_spacing"/);
    expect(err(() => resolveSchedulerConfig('ddim', {}, { use_karras_sigmas: true }))).toMatch(
      /"use_karras_sigmas" does not apply to sampler ddim/,
    );
    expect(err(() => resolveSchedulerConfig('dpmpp-2m', { algorithm_type: 'sde-dpmsolver++' }))).toMatch(
      /"algorithm_type"/,
    );
    expect(err(() => defaultSampler({ _class_name: 'LMSDiscreteScheduler' }))).toMatch(
      /LMSDiscreteScheduler.*choose one with sampler \(/,
    );
    expect(err(() => createSampler('ddim', SD15, 0))).toMatch(/inference steps/);
    for (const m of [
      err(() => parseSamplerName('x')),
      err(() => resolveSchedulerConfig('pndm', { steps_offset: -1 })),
    ]) {
      expect(m).not.toMatch(/\n/);
    }
  });
});

describe('e_schedulers goldens', () => {
  it('alphas_cumprod', () => {
    const ac = createSampler('pndm', SD15, 50).alphasCumprod;
    expectClose('alphas_cumprod', ac, f32('alphas_cumprod'));
    expect(noiseSchedule(SD15).alphasCumprod).toEqual(ac);
  });

  for (const name of GOLDEN_SAMPLERS) {
    const key = KEY[name]!;
    it(`${name}: timesteps (exact), sigmas, init_noise_sigma`, () => {
      for (const n of [50, 10]) {
        const s = createSampler(name, SD15, n);
        expect([...s.timesteps], `${name} timesteps_${n}`).toEqual(nums(`${key}.timesteps_${n}`));
        if (E.has(`${key}.sigmas_${n}`)) {
          expectClose(`${name}.sigmas`, s.sigmas!, f32(`${key}.sigmas_${n}`));
        } else expect(s.sigmas).toBeNull();
      }
      const s = createSampler(name, SD15, 50);
      expectClose(`${name}.init_noise_sigma`, [s.initNoiseSigma], f32(`${key}.init_noise_sigma`));
    });

    it(`${name}: consecutive steps from step 0 of 50`, () => {
      const steps = eCase.params[key]!.steps;
      let k = 0; // which saved noise to hand out next
      const noise = (n: number) => {
        const z = f32(`${key}.step${k++}.noise`);
        expect(z.length).toBe(n);
        return z;
      };
      const s = createSampler(name, SD15, 50, name === 'euler-a' ? { noise } : {});
      let sample = f32(`${key}.sample_0`);
      for (let i = 0; i < steps; i++) {
        const p = `${key}.step${i}`;
        expect(s.timesteps[i]).toBe(nums(`${p}.timestep`)[0]);
        expectClose(`${name}.scaled_model_input`, s.scaleModelInput(sample, i), f32(`${p}.scaled_model_input`));
        const r = s.step(f32(`${p}.model_output`), i, sample);
        expectClose(`${name}.prev_sample`, r.prevSample, f32(`${p}.prev_sample`));
        if (E.has(`${p}.pred_original_sample`)) {
          expectClose(`${name}.pred_original_sample`, r.predOriginalSample!, f32(`${p}.pred_original_sample`));
        }
        sample = r.prevSample; // chain our own result
      }
      if (name === 'euler-a') expect(k).toBe(steps);
    });
  }
});

describe('f_txt2img (tiny-sd scheduler_config.json, 10 steps)', () => {
  const raw = loadSchedulerConfig(tinySdDir);
  for (const name of ['pndm', 'ddim'] as const) {
    it(`${name}: timesteps and the scheduler half of the 10-step run`, () => {
      const s = createSampler(name, raw, 10);
      expect([...s.timesteps]).toEqual(nums(`${name}.timesteps`, F));
      expect(s.numWarmupSteps).toBe(name === 'pndm' ? 1 : 0);
      // Replay the pipeline's scheduler calls on the saved UNet outputs (CFG 7.5).
      const unet = f32(`${name}.unet_out_per_step`, F);
      const lat = f32(`${name}.latents_per_step`, F);
      const size = 4 * 32 * 32;
      let x = f32('initial_latents', F);
      let maxErr = 0;
      for (let i = 0; i < s.timesteps.length; i++) {
        const u = unet.subarray(2 * i * size, (2 * i + 1) * size);
        const c = unet.subarray((2 * i + 1) * size, (2 * i + 2) * size);
        const guided = new Float32Array(size);
        for (let k = 0; k < size; k++) guided[k] = Math.fround(u[k]! + Math.fround(7.5 * Math.fround(c[k]! - u[k]!)));
        // (the UNet saw scaleModelInput(x, i), which is x itself for pndm/ddim; step gets the unscaled latents)
        x = s.step(guided, i, x).prevSample;
        const want = lat.subarray(i * size, (i + 1) * size);
        for (let k = 0; k < size; k++) maxErr = Math.max(maxErr, Math.abs(x[k]! - want[k]!));
      }
      report[`f_txt2img.${name}.latents_per_step`] = maxErr;
      expect(maxErr).toBeLessThan(1e-5);
      const fin = f32(`${name}.final_latents`, F);
      let finErr = 0;
      for (let k = 0; k < size; k++) finErr = Math.max(finErr, Math.abs(x[k]! - fin[k]!));
      expect(finErr).toBeLessThan(1e-5);
    });
  }
});

describe('other paths', () => {
  it('PNDM 10 steps: 11 calls [901, 801, 801, 701, …, 1]; PRK branch when skip_prk_steps is false', () => {
    expect(createSampler('pndm', SD15, 10).timesteps).toEqual([901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    const prk = createSampler('pndm', { ...SD15, skip_prk_steps: false }, 10);
    expect(prk.timesteps).toEqual([
      901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1,
    ]);
    // A full PRK+PLMS run on a constant "noise prediction" stays finite and moves the sample.
    let x: Float32Array = new Float32Array(16).fill(1);
    const mo = new Float32Array(16).fill(0.1);
    for (let i = 0; i < prk.timesteps.length; i++) x = prk.step(mo, i, x).prevSample;
    expect(Number.isFinite(x[0]!)).toBe(true);
    expect(() => prk.step(mo, 0, x)).toThrow(/out of order/);
  });

  it("PNDM's PRK warm-up is the paper's Runge-Kutta step on the DDIM transfer, and PLMS then extrapolates its ε", () => {
    // PNDM (Liu et al. 2022), Algorithm 1: from x_t with δ = 1000/n, four noise predictions
    //   e1 = ε(x_t, t), e2 = ε(φ(x_t, e1, t, t−δ/2), t−δ/2), e3 = ε(φ(x_t, e2, t, t−δ/2), t−δ/2), e4 = ε(φ(x_t, e3, t, t−δ), t−δ)
    // and x_{t−δ} = φ(x_t, (e1 + 2·e2 + 2·e3 + e4)/6, t, t−δ), where the transfer φ (eq. 11) is the deterministic
    // DDIM step: x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t, φ = √ᾱ_t'·x0 + √(1−ᾱ_t')·ε. Algorithm 2 (PLMS) then uses
    // ε' = (55·e_t − 59·e_{t+δ} + 37·e_{t+2δ} − 9·e_{t+3δ})/24 over the steps' first predictions. Here in float64,
    // with a noise "model" that depends on x and t so that every stage's input and timestep matter.
    const n = 10;
    const delta = 1000 / n;
    const s = createSampler('pndm', { ...SD15, skip_prk_steps: false }, n);
    const ac = (t: number) => s.alphasCumprod[t]!;
    const phi = (x: number[], e: number[], t: number, tp: number) =>
      x.map((xi, k) => {
        const x0 = (xi - Math.sqrt(1 - ac(t)) * e[k]!) / Math.sqrt(ac(t));
        return Math.sqrt(ac(tp)) * x0 + Math.sqrt(1 - ac(tp)) * e[k]!;
      });
    const eps = (x: ArrayLike<number>, t: number) =>
      Array.from(x, (v, k) => Math.tanh(v) * (t / 1000) + 0.05 * (k - 1));
    const start = [0.8, -1.3, 0.4];

    // The sampler, driven as the pipeline drives it: the model evaluated at each call's own timestep.
    const outputs: number[][] = [];
    let x: Float32Array = Float32Array.from(start);
    for (let i = 0; i < 13; i++) {
      x = s.step(Float32Array.from(eps(x, s.timesteps[i]!)), i, x).prevSample;
      outputs.push(Array.from(x));
    }

    // The closed forms: three PRK steps (12 calls: each stage's output), then the first PLMS step.
    const expected: number[][] = [];
    const firsts: number[][] = [];
    let xt = start;
    for (let step = 0; step < 3; step++) {
      const t = 901 - step * delta;
      const half = t - delta / 2;
      const e1 = eps(xt, t);
      const x1 = phi(xt, e1, t, half);
      const e2 = eps(x1, half);
      const x2 = phi(xt, e2, t, half);
      const e3 = eps(x2, half);
      const x3 = phi(xt, e3, t, t - delta);
      const e4 = eps(x3, t - delta);
      xt = phi(
        xt,
        e1.map((v, k) => (v + 2 * e2[k]! + 2 * e3[k]! + e4[k]!) / 6),
        t,
        t - delta,
      );
      expected.push(x1, x2, x3, xt);
      firsts.push(e1);
    }
    expect(s.timesteps.slice(0, 13)).toEqual([901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601]);
    const e = eps(xt, 601);
    const [a, b, c] = [firsts[2]!, firsts[1]!, firsts[0]!];
    expected.push(
      phi(
        xt,
        e.map((v, k) => (55 * v - 59 * a[k]! + 37 * b[k]! - 9 * c[k]!) / 24),
        601,
        501,
      ),
    );

    for (let i = 0; i < 13; i++)
      for (let k = 0; k < start.length; k++) expect(outputs[i]![k], `call ${i}`).toBeCloseTo(expected[i]![k]!, 5);
  });

  it('v-prediction and clip_sample paths agree with their closed forms', () => {
    // DDIM with v-prediction: x0 = sqrt(a)·x - sqrt(1-a)·v, then clipped to ±1 by DDIM's default clip_sample.
    const s = createSampler('ddim', { ...SD15, clip_sample: true, prediction_type: 'v_prediction' }, 10);
    const a = s.alphasCumprod[s.timesteps[0]!]!;
    const x = Float32Array.from([0.5, -3, 2]);
    const v = Float32Array.from([0.1, 0.2, -0.3]);
    const r = s.step(v, 0, x);
    const x0 = [...x].map((xi, i) => Math.max(-1, Math.min(1, Math.sqrt(a) * xi - Math.sqrt(1 - a) * v[i]!)));
    for (let i = 0; i < 3; i++) expect(r.predOriginalSample![i]).toBeCloseTo(x0[i]!, 5);
    for (const name of ['pndm', 'euler', 'euler-a', 'dpmpp-2m'] as const) {
      const sm = createSampler(name, { ...SD15, prediction_type: 'v_prediction' }, 10, {
        noise: (n) => new Float32Array(n),
      });
      let y: Float32Array = Float32Array.from([0.3, -0.2]);
      for (let i = 0; i < sm.timesteps.length; i++)
        y = sm.step(Float32Array.from([0.01, 0.02]), i, sm.scaleModelInput(y, i)).prevSample;
      expect(Number.isFinite(y[0]!) && Number.isFinite(y[1]!)).toBe(true);
    }
  });

  it('DDIM eta > 0 adds std·noise; ancestral samplers require a noise source', () => {
    const z = (n: number) => new Float32Array(n).fill(1);
    const s0 = createSampler('ddim', SD15, 10);
    const s1 = createSampler('ddim', SD15, 10, { eta: 1, noise: z });
    const x = Float32Array.from([0.5, -0.5]);
    const mo = Float32Array.from([0.1, 0.2]);
    const d = s1.step(mo, 1, x).prevSample[0]! - s0.step(mo, 1, x).prevSample[0]!;
    expect(d).toBeGreaterThan(0.01);
    expect(() => createSampler('euler-a', SD15, 10).step(mo, 0, x)).toThrow(/noise/);
    expect(() => createSampler('ddim', SD15, 10, { eta: 0.5 }).step(mo, 0, x)).toThrow(/noise/);
  });

  it('karras sigmas and trailing spacing produce descending schedules', () => {
    for (const name of ['euler', 'dpmpp-2m'] as const) {
      const s = createSampler(name, { ...SD15, use_karras_sigmas: true }, 20);
      expect(s.sigmas![0]).toBeCloseTo(14.6146, 3);
      for (let i = 1; i < 20; i++) expect(s.sigmas![i]!).toBeLessThan(s.sigmas![i - 1]!);
      for (let i = 1; i < 20; i++) expect(s.timesteps[i]!).toBeLessThanOrEqual(s.timesteps[i - 1]!);
    }
    expect(createSampler('ddim', { ...SD15, timestep_spacing: 'trailing' }, 10).timesteps).toEqual([
      999, 899, 799, 699, 599, 499, 399, 299, 199, 99,
    ]);
    const lead = createSampler('euler', { ...SD15, timestep_spacing: 'leading' }, 10);
    expect(lead.timesteps[0]).toBe(901);
    expect(lead.initNoiseSigma).toBeCloseTo(Math.hypot(lead.sigmas![0]!, 1), 5);
  });

  it('dpmpp-2m-karras is dpmpp-2m on karras sigmas, whatever the file says', () => {
    expect(parseSamplerName('DPM++ 2M Karras')).toBe('dpmpp-2m-karras');
    for (const file of [SD15, { ...SD15, use_karras_sigmas: false }, { ...SD15, use_lu_lambdas: true }]) {
      const c = resolveSchedulerConfig('dpmpp-2m-karras', file);
      expect(c).toMatchObject({ className: 'DPMSolverMultistepScheduler', useKarrasSigmas: true, useLuLambdas: false });
    }
    const z = (n: number) => new Float32Array(n).fill(0.25);
    const a = createSampler('dpmpp-2m-karras', SD15, 20, { noise: z });
    const b = createSampler('dpmpp-2m', resolveSchedulerConfig('dpmpp-2m', SD15, { use_karras_sigmas: true }), 20);
    expect([...a.timesteps]).toEqual([...b.timesteps]);
    expect(a.sigmas).toEqual(b.sigmas);
    let x: Float32Array = Float32Array.from([0.5, -0.5, 1, 2]);
    let y = x;
    for (let i = 0; i < 20; i++) {
      const mo = Float32Array.from(x, (v, k) => Math.sin(v + k));
      x = a.step(mo, i, x).prevSample;
      y = b.step(mo, i, y).prevSample;
      expect(x).toEqual(y);
    }
    // an explicit override still wins over what the variant sets
    expect(resolveSchedulerConfig('dpmpp-2m-karras', SD15, { use_karras_sigmas: false }).useKarrasSigmas).toBe(false);
  });

  it('training helpers: addNoise, velocity, snr', () => {
    const ns = noiseSchedule(SD15);
    const x0 = Float32Array.from([1, -1, 0.5, 2]);
    const e = Float32Array.from([0.3, 0.1, -0.2, 1]);
    const t = 500;
    const a = ns.alphasCumprod[t]!;
    const xt = ns.addNoise(x0, e, t);
    const v = ns.velocity(x0, e, t);
    for (let i = 0; i < 4; i++) {
      expect(xt[i]).toBeCloseTo(Math.sqrt(a) * x0[i]! + Math.sqrt(1 - a) * e[i]!, 6);
      expect(v[i]).toBeCloseTo(Math.sqrt(a) * e[i]! - Math.sqrt(1 - a) * x0[i]!, 6);
    }
    expect(ns.snr(t)).toBeCloseTo(a / (1 - a), 5);
    const two = ns.addNoise(x0, e, [0, 999]);
    expect(two[0]).toBeCloseTo(ns.addNoise(x0, e, 0)[0]!, 7);
    expect(two[3]).toBeCloseTo(ns.addNoise(x0, e, 999)[3]!, 7);
  });
});
