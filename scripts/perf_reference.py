#!/usr/bin/env python3
"""PyTorch CPU reference column of `npm run bench` (tools/perf/).

Does the same work as each benchmark case, with minimal torch modules written here (diffusers and transformers
are not needed): diffusers 0.24's UNet2DConditionModel (SD 1.x configs: ResnetBlock2D, Transformer2DModel with
conv projections, GEGLU, classic AttnProcessor = baddbmm -> softmax -> bmm, exactly what diffusers runs on torch
1.13) and transformers' CLIPTextModel, with module names that load diffusers/transformers state dicts.

Cases (one per process, so ru_maxrss is the case's peak RSS, like the oracle's timing.json):
  tiny-step / sd15-step   no_grad UNet forward, batch 2 (the guided step's UNet pass), t = 981
  tiny-ae / sd15-ae       Attend-and-Excite's gradient pass (batch-1 UNet forward with the 16x16 cross-attention
                          probabilities kept, A&E's loss on tokens 2 and 5, d loss / d latent) + the step above
  train                   forward + backward w.r.t. every weight of CLIPTextModel + UNet (the shapes model's
                          configs), batch 32, weighted MSE; no optimiser step (TrainingStep.run has none either)

UNet weights come from the model folder's safetensors file (the tiny oracle model or the benchmark's random SD-1.5
file), read through a memory map; the training case initialises its own weights as torch does.

Prints one JSON object (and writes it to --result if given).
"""
import argparse
import json
import math
import mmap
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- safetensors (reader only) -------------------------------------------------------------------------------

_DTYPES = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'F64': torch.float64, 'I64': torch.int64}


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        dtype = _DTYPES[info['dtype']]
        start, end = info['data_offsets']
        count = (end - start) // torch.tensor([], dtype=dtype).element_size()
        t = torch.frombuffer(mm, dtype=dtype, count=count, offset=8 + n + start) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info['shape'])
    return out


# ---- diffusers UNet2DConditionModel (SD 1.x) -----------------------------------------------------------------

def timestep_embedding(t, dim, flip_sin_to_cos, shift, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class Attention(nn.Module):
    """diffusers' Attention with the classic AttnProcessor (baddbmm, softmax, bmm)."""

    def __init__(self, query_dim, context_dim, heads, dim_head, bias=False, out_bias=True):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias), nn.Dropout(0.0)])
        self.store = None  # callable(module, probs) for A&E

    def forward(self, x, context=None):
        ctx = x if context is None else context
        b, n, _ = x.shape
        h = self.heads
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)

        def to_batch(t):
            return t.reshape(b, t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(b * h, t.shape[1], -1)

        q, k, v = to_batch(q), to_batch(k), to_batch(v)
        scores = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype), q, k.transpose(-1, -2), beta=0, alpha=self.scale)
        probs = scores.softmax(dim=-1)
        if self.store is not None:
            self.store(self, probs)
        out = torch.bmm(probs, v)
        out = out.reshape(b, h, n, -1).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim, only_cross):
        super().__init__()
        self.only_cross = only_cross
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, context_dim if only_cross else dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim, heads, dim_head)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x), context if self.only_cross else None) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, channels, heads, context_dim, layers, groups, linear_proj, only_cross):
        super().__init__()
        dim_head = channels // heads
        self.linear_proj = linear_proj
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels) if linear_proj else nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, dim_head, context_dim, only_cross) for _ in range(layers)])
        self.proj_out = nn.Linear(channels, channels) if linear_proj else nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        if self.linear_proj:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        if self.linear_proj:
            h = self.proj_out(h).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        else:
            h = self.proj_out(h.reshape(b, hh, ww, c).permute(0, 3, 1, 2).contiguous())
        return h + x


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, scale=1.0):
        super().__init__()
        self.scale = scale
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        sc = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (sc + h) / self.scale


class Downsample2D(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, size=None):
        x = F.interpolate(x, scale_factor=2.0, mode='nearest') if size is None else F.interpolate(x, size=size, mode='nearest')
        return self.conv(x)


class DownBlock(nn.Module):
    def __init__(self, cfg, i, cin, cout, temb, cross):
        super().__init__()
        n = cfg['layers'][i]
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, temb, cfg['groups'], cfg['eps']) for j in range(n)])
        if cross:
            self.attentions = nn.ModuleList([Transformer2DModel(cout, cfg['heads'][i], cfg['context_dim'], cfg['tlayers'][i], cfg['groups'], cfg['linear_proj'], cfg['only_cross'][i]) for _ in range(n)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample2D(cout, cfg['down_pad'])]) if i < len(cfg['boc']) - 1 else None

    def forward(self, x, temb, context):
        outs = []
        for j, r in enumerate(self.resnets):
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[j](x, context)
            outs.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            outs.append(x)
        return x, outs


class UpBlock(nn.Module):
    def __init__(self, cfg, i, prev_out, cout, cin, temb, cross):
        super().__init__()
        rev_layers = list(reversed(cfg['layers']))
        rev_heads = list(reversed(cfg['heads']))
        rev_t = list(reversed(cfg['tlayers']))
        rev_only = list(reversed(cfg['only_cross']))
        n = rev_layers[i] + 1
        self.resnets = nn.ModuleList()
        for j in range(n):
            skip = cin if j == n - 1 else cout
            rin = prev_out if j == 0 else cout
            self.resnets.append(ResnetBlock2D(rin + skip, cout, temb, cfg['groups'], cfg['eps']))
        if cross:
            self.attentions = nn.ModuleList([Transformer2DModel(cout, rev_heads[i], cfg['context_dim'], rev_t[i], cfg['groups'], cfg['linear_proj'], rev_only[i]) for _ in range(n)])
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if i < len(cfg['boc']) - 1 else None

    def forward(self, x, skips, temb, context, size=None):
        for j, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[j](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x


class MidBlock(nn.Module):
    def __init__(self, cfg, c, temb):
        super().__init__()
        s = cfg['mid_scale']
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, temb, cfg['groups'], cfg['eps'], s), ResnetBlock2D(c, c, temb, cfg['groups'], cfg['eps'], s)])
        self.attentions = nn.ModuleList([Transformer2DModel(c, cfg['heads'][-1], cfg['context_dim'], cfg['tlayers'][-1], cfg['groups'], cfg['linear_proj'], False)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


def per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


def unet_cfg(j):
    boc = j.get('block_out_channels', [320, 640, 1280, 1280])
    n = len(boc)
    heads = j.get('num_attention_heads') or j.get('attention_head_dim', 8)
    assert j.get('act_fn', 'silu') == 'silu'
    return {
        'boc': boc,
        'in': j.get('in_channels', 4),
        'out': j.get('out_channels', 4),
        'down': j['down_block_types'],
        'up': j['up_block_types'],
        'mid': j.get('mid_block_type', 'UNetMidBlock2DCrossAttn'),
        'layers': per_block(j.get('layers_per_block', 2), n),
        'heads': per_block(heads, n),
        'tlayers': per_block(j.get('transformer_layers_per_block', 1), n),
        'only_cross': per_block(j.get('only_cross_attention', False), n),
        'context_dim': j.get('cross_attention_dim', 1280),
        'groups': j.get('norm_num_groups', 32),
        'eps': j.get('norm_eps', 1e-5),
        'down_pad': j.get('downsample_padding', 1),
        'mid_scale': j.get('mid_block_scale_factor', 1),
        'linear_proj': j.get('use_linear_projection', False),
        'flip': j.get('flip_sin_to_cos', True),
        'shift': j.get('freq_shift', 0),
        'center': j.get('center_input_sample', False),
        'k_in': j.get('conv_in_kernel', 3),
        'k_out': j.get('conv_out_kernel', 3),
    }


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        boc = cfg['boc']
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(cfg['in'], boc[0], cfg['k_in'], padding=(cfg['k_in'] - 1) // 2)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, t in enumerate(cfg['down']):
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(cfg, i, cin, cout, temb, t == 'CrossAttnDownBlock2D'))
        self.mid_block = MidBlock(cfg, boc[-1], temb) if cfg['mid'] else None
        rev = list(reversed(boc))
        self.up_blocks = nn.ModuleList()
        prev = rev[0]
        for i, t in enumerate(cfg['up']):
            cout = rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            self.up_blocks.append(UpBlock(cfg, i, prev, cout, cin, temb, t == 'CrossAttnUpBlock2D'))
            prev = cout
        self.conv_norm_out = nn.GroupNorm(cfg['groups'], boc[0], eps=cfg['eps'])
        self.conv_out = nn.Conv2d(boc[0], cfg['out'], cfg['k_out'], padding=(cfg['k_out'] - 1) // 2)

    def forward(self, sample, timestep, context):
        cfg = self.cfg
        if cfg['center']:
            sample = 2 * sample - 1
        t = timestep if torch.is_tensor(timestep) and timestep.dim() == 1 else torch.full((sample.shape[0],), float(timestep))
        temb = self.time_embedding(timestep_embedding(t.expand(sample.shape[0]), cfg['boc'][0], cfg['flip'], cfg['shift']))
        x = self.conv_in(sample)
        skips = [x]
        for blk in self.down_blocks:
            x, outs = blk(x, temb, context)
            skips.extend(outs)
        if self.mid_block is not None:
            x = self.mid_block(x, temb, context)
        for i, blk in enumerate(self.up_blocks):
            n = len(blk.resnets)
            mine, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[2:] if skips and blk.upsamplers is not None else None
            if size is not None and tuple(size) == (2 * x.shape[2], 2 * x.shape[3]):
                size = None
            x = blk(x, mine, temb, context, size)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---- transformers CLIPTextModel ------------------------------------------------------------------------------

class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.scale = (d // heads) ** -0.5
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.reshape(b, n, h, -1).transpose(1, 2).reshape(b * h, n, -1)

        q, k, v = split(self.q_proj(x) * self.scale), split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.bmm(q, k.transpose(1, 2)).reshape(b, h, n, n) + mask
        p = w.reshape(b * h, n, n).softmax(dim=-1)
        o = torch.bmm(p, v).reshape(b, h, n, -1).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, d, inner, act):
        super().__init__()
        self.act = act
        self.fc1 = nn.Linear(d, inner)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == 'quick_gelu' else F.gelu(h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, d, heads, inner, act, eps):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, inner, act)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab, d, positions):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(positions, d)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)


class CLIPEncoder(nn.Module):
    def __init__(self, j):
        super().__init__()
        d = j['hidden_size']
        self.layers = nn.ModuleList([CLIPEncoderLayer(d, j['num_attention_heads'], j['intermediate_size'], j.get('hidden_act', 'quick_gelu'), j.get('layer_norm_eps', 1e-5)) for _ in range(j['num_hidden_layers'])])


class CLIPTextTransformer(nn.Module):
    def __init__(self, j):
        super().__init__()
        self.embeddings = CLIPEmbeddings(j['vocab_size'], j['hidden_size'], j['max_position_embeddings'])
        self.encoder = CLIPEncoder(j)
        self.final_layer_norm = nn.LayerNorm(j['hidden_size'], eps=j.get('layer_norm_eps', 1e-5))

    def forward(self, ids):
        b, n = ids.shape
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding(torch.arange(n))[None]
        mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)[None, None]
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


class CLIPTextModel(nn.Module):
    def __init__(self, j):
        super().__init__()
        self.text_model = CLIPTextTransformer(j)

    def forward(self, ids):
        return self.text_model(ids)


# ---- Attend-and-Excite's loss --------------------------------------------------------------------------------

def gaussian_kernel(size=3, sigma=0.5):
    ax = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    g1 = 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-(((ax - mean) / (2 * sigma)) ** 2))
    k = g1[:, None] * g1[None, :]
    return (k / k.sum())[None, None]


def ae_loss(records, res, token_indices, kernel):
    """records: [(module, probs [heads, HW, T])] of the 16x16 cross-attention layers (batch 1)."""
    maps = [p.reshape(-1, res[0], res[1], p.shape[-1]) for p in records]
    agg = torch.cat(maps, dim=0).sum(0) / sum(m.shape[0] for m in maps)
    text = (agg[:, :, 1:-1] * 100).softmax(dim=-1)
    maxes = []
    for i in token_indices:
        img = text[:, :, i - 1][None, None]
        img = F.conv2d(F.pad(img, (1, 1, 1, 1), mode='reflect'), kernel)[0, 0]
        maxes.append(img.max())
    losses = [torch.clamp(1.0 - m, min=0) for m in maxes]
    return max(losses)


# ---- cases ---------------------------------------------------------------------------------------------------

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(xs):
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def build_unet(unet_dir):
    t0 = time.perf_counter()
    with open(os.path.join(unet_dir, 'config.json')) as f:
        j = json.load(f)
    model = UNet2DConditionModel(unet_cfg(j))
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    sd = load_safetensors(os.path.join(unet_dir, 'diffusion_pytorch_model.safetensors'))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f'state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}')
    del sd
    model.eval()
    return model, j, build_s, time.perf_counter() - t1


def unet_case(args, name):
    t0 = time.perf_counter()
    model, j, build_s, load_s = build_unet(args.tiny if name.startswith('tiny') else args.sd15)
    for p in model.parameters():
        p.requires_grad_(False)
    size = 32 if name.startswith('tiny') else args.sd15_latent
    c = j.get('in_channels', 4)
    d = j.get('cross_attention_dim', 768)
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, c, size, size, generator=g)
    context = torch.randn(2, 77, d, generator=g)
    t2 = torch.tensor([981.0, 981.0])
    t1 = torch.tensor([981.0])

    def step():
        with torch.no_grad():
            return model(torch.cat([latent, latent]), t2, context)

    ae = name.endswith('-ae')
    records = []
    res = (16, 16)
    kernel = gaussian_kernel()
    if ae:
        def store(mod, probs):
            if probs.shape[1] == res[0] * res[1] and mod.is_cross:
                records.append(probs)
        for n_, m in model.named_modules():
            if isinstance(m, Attention):
                m.is_cross = n_.endswith('attn2')
                m.store = store

    def grad_pass():
        records.clear()
        x = latent.clone().requires_grad_(True)
        model(x, t1, context[1:])
        loss = ae_loss(list(records), res, [2, 5], kernel)
        (gx,) = torch.autograd.grad(loss, [x])
        records.clear()
        return gx

    times, grads, steps = [], [], []
    if ae:
        grad_pass()
    step()
    first = time.perf_counter() - t0
    rss_first = rss_mb()
    for _ in range(args.runs):
        a = time.perf_counter()
        if ae:
            grad_pass()
        b = time.perf_counter()
        step()
        e = time.perf_counter()
        grads.append((b - a) * 1000)
        steps.append((e - b) * 1000)
        times.append((e - a) * 1000)
    out = {'firstStepMs': first * 1000, 'setup': {'buildMs': build_s * 1000, 'loadMs': load_s * 1000}, 'timesMs': times, 'medianMs': median(times), 'rssAfterFirstStepMb': rss_first}
    if ae:
        out['gradMs'] = grads
        out['stepMs'] = steps
    out['params'] = sum(p.numel() for p in model.parameters())
    return out


def train_case(args):
    with open(args.train_unet) as f:
        uj = json.load(f)
    with open(args.train_text) as f:
        tj = json.load(f)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    text = CLIPTextModel(tj)
    unet = UNet2DConditionModel(unet_cfg(uj))
    build_s = time.perf_counter() - t0
    params = list(text.parameters()) + list(unet.parameters())
    b = args.batch
    s = uj['sample_size']
    c = uj['in_channels']
    tokens = tj['max_position_embeddings']
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, tj['vocab_size'], (b, tokens), generator=g)
    noisy = torch.randn(b, c, s, s, generator=g)
    target = torch.randn(b, c, s, s, generator=g)
    ts = torch.randint(0, 1000, (b,), generator=g).float()
    w = torch.ones(b)

    def step():
        for p in params:
            p.grad = None
        pred = unet(noisy, ts, text(ids))
        per = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        loss = (per * w).sum() / b
        loss.backward()
        return loss.item()

    step()
    first = time.perf_counter() - t0
    rss_first = rss_mb()
    times = []
    for _ in range(args.runs):
        a = time.perf_counter()
        step()
        times.append((time.perf_counter() - a) * 1000)
    return {'firstStepMs': first * 1000, 'setup': {'buildMs': build_s * 1000, 'loadMs': 0}, 'timesMs': times, 'medianMs': median(times), 'rssAfterFirstStepMb': rss_first, 'params': sum(p.numel() for p in params)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--case', required=True, choices=['tiny-step', 'tiny-ae', 'sd15-step', 'sd15-ae', 'train'])
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--tiny', help='UNet folder of the tiny model (config.json + diffusion_pytorch_model.safetensors)')
    ap.add_argument('--sd15', help='UNet folder of the random SD-1.5 model')
    ap.add_argument('--sd15-latent', type=int, default=64, help='latent size of the SD-1.5 cases (64 = 512 px)')
    ap.add_argument('--train-unet', help='UNet config.json of the training case')
    ap.add_argument('--train-text', help='text encoder config.json of the training case')
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--result', help='also write the JSON here')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    out = train_case(args) if args.case == 'train' else unet_case(args, args.case)
    out.update({'case': args.case, 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'peakRssMb': rss_mb(),
                'loadavg': {'start': [round(x, 2) for x in load], 'end': [round(x, 2) for x in os.getloadavg()]}})
    text = json.dumps(out)
    if args.result:
        with open(args.result, 'w') as f:
            f.write(text)
    print(text)


if __name__ == '__main__':
    sys.exit(main())
