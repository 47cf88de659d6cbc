"""The probe workbench of Gaintseva et al., "Improving Interpretability and Robustness for the
Detection of AI-Generated Images" (arXiv 2406.15035): linear probes on frozen encoder embeddings,
residual vectors, cross-generator transfer, greedy feature removal, attention-head selection and
text interpretation, on any frozen encoder the project can build.

- `spec` (no torch): which encoder and tap, as data that manifests carry;
- `encoders`: `bench.api.Embedder`s over a detector's penultimate features or a CLIP encoder's taps;
- `embed`: a suite's embeddings computed through the runner's scoring loop and exported as a folder;
- `data`: the seeded splits every method shares; `lr`: the paper's logistic-regression grid;
- `batched`: many logistic regressions at once in torch (feature removal, head selection);
- `transfer`, `removal`, `heads`, `explain`: the methods; `plots`, `folders`: their outputs;
- `catalog` (no torch) and `detector`: a fitted probe as the registered detector `clip-lr`.

May import bench, detectors and suites' public objects; importing it loads no torch, and nothing
here needs open_clip or transformers until a CLIP encoder is asked for.
"""
