"""The blas-probe shapes through PyTorch (MKL on x86), same thread count: the reference the training step
step is compared with. Usage: python torch_matmul.py THREADS (the oracle venv: torch 2.15.0)."""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
shapes = [("q/o proj fwd", 864, 576, 576, False, False), ("gate/up fwd", 864, 576, 1536, False, False),
          ("down fwd", 864, 1536, 576, False, False), ("gate/up dX = dY·Wᵀ", 864, 1536, 576, False, True),
          ("gate/up dW = Xᵀ·dY", 576, 864, 1536, True, False), ("head fwd X·Eᵀ", 608, 576, 49152, False, True),
          ("head dX = dZ·E", 608, 49152, 576, False, False), ("head dE = dZᵀ·X", 49152, 608, 576, True, False)]
print(f"{torch.get_num_threads()} thread(s), GFLOP/s (best of 3): PyTorch {torch.__version__}")
for name, m, k, n, lt, rt in shapes:
    a = torch.randn(k, m).t() if lt else torch.randn(m, k)
    b = torch.randn(n, k).t() if rt else torch.randn(k, n)
    f = lambda: a @ b
    f()
    best = min((lambda t0: (f(), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
    print(f"{name:>20} {m}x{k}x{n}: torch {2*m*n*k/best/1e9:>4.0f}")
