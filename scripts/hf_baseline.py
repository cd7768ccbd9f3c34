# Anchor: HF transformers BertForPreTraining training throughput on this GPU.
# The Hugging Face anchor for scripts/gpu-check.sh (same card, same run): prints one line per
# model and precision. Usage: python3 scripts/hf_baseline.py [--compile]
# With --cpu THREADS: BERT-mini in fp32 at batch 32 on the CPU (docs/cpu.md), to set beside
# bertrain bench --config configs/bert-mini.ini --batch 32 --seq 128 --pred 20 --threads THREADS.
import time, sys, os, torch
from transformers import BertConfig, BertForPreTraining
torch.manual_seed(0)
dev = 'cpu' if '--cpu' in sys.argv else 'cuda'
def sync():
    if dev == 'cuda': torch.cuda.synchronize()
def run(name, L, H, A, I, B=64, S=128, V=30522, mode='fp32', compile_=False, steps=30, warm=5):
    torch.backends.cuda.matmul.allow_tf32 = (mode != 'fp32')
    torch.backends.cudnn.allow_tf32 = (mode != 'fp32')
    cfg = BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                     intermediate_size=I, max_position_embeddings=512, attn_implementation='sdpa')
    m = BertForPreTraining(cfg).to(dev).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=(dev == 'cuda'))
    fwd = torch.compile(m) if compile_ else m
    ids = torch.randint(0, V, (B, S), device=dev)
    tt = torch.cat([torch.zeros(B, S//2, dtype=torch.long), torch.ones(B, S//2, dtype=torch.long)], 1).to(dev)
    am = torch.ones(B, S, dtype=torch.long, device=dev)
    labels = torch.full((B, S), -100, device=dev)
    msk = torch.rand(B, S, device=dev) < 0.15
    labels[msk] = ids[msk]
    nsp = torch.randint(0, 2, (B,), device=dev)
    def step():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(mode == 'bf16')):
            out = fwd(input_ids=ids, token_type_ids=tt, attention_mask=am, labels=labels, next_sentence_label=nsp)
        out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        return out.loss
    t0 = time.time()
    for _ in range(warm): step()
    sync(); tw = time.time() - t0
    t0 = time.time()
    for _ in range(steps): l = step()
    sync(); dt = (time.time() - t0) / steps
    nparam = sum(p.numel() for p in m.parameters())
    # model flops per training step (3x forward), MLM head over all S positions as HF computes it
    f_tok = 24 * L * H * H + 4 * S * H * L + 2 * H * H + 2 * H * V
    flops = 3 * f_tok * B * S
    print(f"{name:10s} {mode:5s} compile={int(compile_)} B={B} S={S} params={nparam/1e6:.1f}M "
          f"step={dt*1e3:.2f}ms seq/s={B/dt:.0f} tok/s={B*S/dt:.0f} TFLOP/s={flops/dt/1e12:.1f} warm={tw:.1f}s loss={l.item():.3f}", flush=True)
    del m, opt
    if dev == 'cuda': torch.cuda.empty_cache()
if dev == 'cpu':
    torch.set_num_threads(int(sys.argv[sys.argv.index('--cpu') + 1]))
    print(torch.__version__, 'cpu,', torch.get_num_threads(), 'threads', flush=True)
    run('bert-mini', 4, 256, 4, 1024, B=32, mode='fp32', steps=5, warm=2)
    sys.exit(0)
print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
for mode in ['fp32', 'tf32', 'bf16']:
    run('bert-mini', 4, 256, 4, 1024, mode=mode)
for mode in ['fp32', 'tf32', 'bf16']:
    run('bert-base', 12, 768, 12, 3072, mode=mode)
run('bert-mini', 4, 256, 4, 1024, B=512, mode='bf16')
if '--compile' in sys.argv:
    run('bert-base', 12, 768, 12, 3072, mode='bf16', compile_=True)
    run('bert-mini', 4, 256, 4, 1024, mode='bf16', compile_=True)
