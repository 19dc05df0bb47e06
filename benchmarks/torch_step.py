"""Seconds per training step in PyTorch: the reference for benchmarks.train_step.

The same three steps as benchmarks/train_step.py (TensorFlow), at the same
configurations (benchmarks/step_common.py: tiny, toyscapes, r101_256,
paper), on the same numpy batch (`step_common.make_arrays`), timed the same
way: one fixed in-memory batch, the three steps in interleaved rounds, the
median over the rounds after the warm-up rounds, learning rates 0 (every
optimizer does its full arithmetic; the random-init weights stay put).
benchmarks/tf_vs_torch.py runs both scripts alternately and tabulates them.

    python -m benchmarks.torch_step --config tiny --json /tmp/torch_step.json
    python -m benchmarks.torch_step --config r101_256 --json OUT

Structure: valeoai/ADVENT advent/domain_adaptation/train_UDA.py
`train_advent` (one iteration: zero the grads, set the poly learning rates;
G step with the discriminators' parameters frozen (requires_grad False):
segmentation losses, backward, then the adversarial loss through the
discriminators, backward; D step with their parameters unfrozen on the
DETACHED maps, source half then target half, each loss / 2, backward; then
the optimizer steps), advent/model/deeplabv2.py and
advent/model/discriminator.py (benchmarks/torch_models.py builds both, with
tf_pixintra's depth/width/BN options). Eager PyTorch, NCHW, as ADVENT.

The math is each TF step's as tf_pixintra defines it (adapters/inter.py,
adapters/intra.py, adapters/common.py, losses.py, adapters/optimizers.py),
not ADVENT's where they differ:
- supervised (InterDomainAdapter "source_only"): G on the source image,
  cross-entropy over the labelled pixels (255 ignored) of the logits
  bilinearly upsampled to the input size, main + 0.1 x aux.
- stage1 (InterDomainAdapter "adaptsegnet", Eq. 1): as supervised, plus G on
  the target image, softmax maps into D_main / D_aux (output stride 32),
  G's term 1e-3 x BCE(D_main, source) + 2e-4 x BCE(D_aux, source); each D:
  0.5 x BCE(D(source map), 1) + 0.5 x BCE(D(target map), 0). Source = 1
  (ADVENT labels source 0). The target maps D learns from are G's softmax
  maps detached (computed once, as in TF; ADVENT recomputes the softmax).
- stage2 (PixelIntraAdapter "cts", Eq. 5 + Eq. 8): G on the target image
  only; partial cross-entropy on the pseudo-labelled (easy) pixels, main +
  0.1 x aux; pixel-level Ds (logits upsampled to the input size);
  G's term 1e-3 x mean((D_main o M)^2) + 2e-4 x mean((D_aux o M)^2) over
  the real (not padded) pixels; each D: mean((D - Z)^2) on the detached
  maps. The segmentation and adversarial terms come from ONE forward pass
  here, so G takes one backward of their sum (two would need retain_graph).
- G: SGD, momentum 0.9, coupled weight decay 5e-4 (PyTorch's
  `weight_decay`, which TF writes as 0.5 x wd x sum(w^2) added to the loss),
  heads (layer5/layer6) at 10x LR in a second parameter group (TF multiplies
  their gradients by 10: the same update with momentum); each D: Adam,
  betas (0.9, 0.99), eps 1e-8; all with poly decay (power 0.9) over
  step_common.SCHEDULE_STEPS from learning rate 0, as train_step.py.
- Upsampling: bilinear with half-pixel centres (align_corners False, as
  tf.image.resize; ADVENT uses align_corners True).
- Frozen BN (bn_mode "frozen"): BN in eval mode (normalised with its stored
  statistics, never updated) with gamma/beta frozen, as tf_pixintra's frozen
  BN. ADVENT freezes gamma/beta but keeps BN in train mode (batch
  statistics). bn_mode "train" (toyscapes): ordinary BN in train mode.
What the TF step does and this one does NOT (so part of any time gap):
- diagnostics every step (tf_pixintra/adapters/diagnostics.py): each D's
  ROC AUC from ranks (`PairwiseAUC`: a sort over the D-output pixels of the
  step; in stage2 the upsampled input-size maps) and, in stage2 (CTS), the
  streaming Pearson correlation of D's output with Z;
- Keras Mean trackers of every loss and the learning-rate logs of `report`;
- the L2 penalty as a loss term (sum of squares of every G weight and its
  gradient) where PyTorch adds wd x w inside the SGD step;
- in stage1, the source softmax maps are computed inside G's tape (not
  differentiated); here only in the D step.
Smaller arithmetic differences (no effect at learning rate 0): Keras SGD
keeps its momentum buffer in units of lr x g, Keras Adam adds eps to the
bias-corrected sqrt(v) differently.

Threads: PyTorch's defaults (recorded in the JSON) unless --threads.
"""

import numpy as np
import torch
from torch.nn import functional as F

from tf_pixintra import io_utils
from tf_pixintra.config import OptimConfig

from benchmarks.step_common import CONFIGS
from benchmarks.step_common import KINDS
from benchmarks.step_common import NUM_CLASSES
from benchmarks.step_common import SCHEDULE_STEPS
from benchmarks.step_common import config_names
from benchmarks.step_common import machine
from benchmarks.step_common import make_arrays
from benchmarks.step_common import print_seconds_table
from benchmarks.step_common import rounds
from benchmarks.step_common import step_parser
from benchmarks.step_common import time_interleaved
from benchmarks.step_common import timing_record
from benchmarks.torch_models import FCDiscriminator
from benchmarks.torch_models import deeplab_v2

IGNORE_LABEL = 255
PAD_MASK = 255           # hard-mask value of padded pixels (none here)
# The adapters' defaults (tf_pixintra.adapters.inter / intra), which
# train_step.py uses; tests/test_torch_step.py checks they still agree.
LAMBDA_SEG_AUX = 0.1
LAMBDA_ADV_MAIN, LAMBDA_ADV_AUX = 1e-3, 2e-4     # Stage I
BETA_MAIN, BETA_AUX = 1e-3, 2e-4                 # Stage II
# Learning rates of train_step.py: 0 for G and both Ds.
LR_G = LR_D = 0.0


def poly_lr(base_lr, step, power):
    """ADVENT's lr_poly, ending at 0 as keras PolynomialDecay."""
    return base_lr * (1.0 - min(step, SCHEDULE_STEPS) / SCHEDULE_STEPS) ** power


def upsample(logits, size):
    """Bilinear resize of [B,C,h,w] logits to `size`, half-pixel centres."""
    return F.interpolate(logits, size=size, mode="bilinear",
                         align_corners=False)


def masked_mean(values, weights):
    """sum(values * weights) / sum(weights), as tf_pixintra.losses."""
    return (values * weights).sum() / weights.sum()


def bce(d_logits, label):
    """ADVENT's bce_loss: mean BCE of the logits against a constant label."""
    return F.binary_cross_entropy_with_logits(
        d_logits, torch.full_like(d_logits, float(label)))


def set_requires_grad(modules, flag):
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


def count(tensors):
    return int(sum(t.numel() for t in tensors))


class TorchStep:
    """One kind's training step: G, its Ds, optimizers and one batch.

    Calling it runs one step and returns its losses (detached tensors,
    named as the TF step logs them).
    """

    def __init__(self, kind, cfg, seed=0, arrays=None):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
        self.kind = kind
        self.optim = OptimConfig(lr_d=LR_D)
        self.g = deeplab_v2(NUM_CLASSES, cfg["depth"], cfg["width"],
                            cfg["bn_mode"], seed=seed).train()
        self.ds = []
        if kind != "supervised":
            pixel = kind == "stage2"
            stride = cfg.get("d_output_stride", 32) if pixel else 32
            for i in (1, 2):
                torch.manual_seed(seed + i)
                self.ds.append(FCDiscriminator(
                    NUM_CLASSES, cfg["ndf"], pixel_level=pixel,
                    output_stride=stride).train())
        heads = {id(p) for p in self.g.head_parameters()}
        trainable = [p for p in self.g.parameters() if p.requires_grad]
        self.opt_g = torch.optim.SGD(
            [{"params": [p for p in trainable if id(p) not in heads]},
             {"params": [p for p in trainable if id(p) in heads]}],
            lr=LR_G, momentum=self.optim.momentum,
            weight_decay=self.optim.weight_decay)
        self.opt_ds = [torch.optim.Adam(
            d.parameters(), lr=LR_D, eps=1e-8,
            betas=(self.optim.adam_beta1, self.optim.adam_beta2))
            for d in self.ds]
        self.iteration = 0
        arrays = make_arrays(kind, cfg, seed) if arrays is None else arrays
        self.batch = {k: self._tensor(k, v) for k, v in arrays.items()}

    @staticmethod
    def _tensor(key, value):
        t = torch.from_numpy(np.ascontiguousarray(value))
        if t.dim() == 4:                       # images NHWC -> NCHW
            return t.permute(0, 3, 1, 2).contiguous()
        if key.endswith("label"):
            return t.long()
        return t

    def parameter_counts(self):
        """Same definitions as train_step.py's JSON (BN statistics count as
        weights of G, as Keras' `weights` include them)."""
        stats = [b for name, b in self.g.named_buffers()
                 if name.endswith(("running_mean", "running_var"))]
        params = list(self.g.parameters())
        return {
            "generator_parameters": count(params) + count(stats),
            "generator_trainable_parameters": count(
                p for p in params if p.requires_grad),
            "discriminator_parameters": (count(self.ds[0].parameters())
                                         if self.ds else None),
        }

    def _set_learning_rates(self):
        power = self.optim.poly_power
        lr = poly_lr(LR_G, self.iteration, power)
        self.opt_g.param_groups[0]["lr"] = lr
        self.opt_g.param_groups[1]["lr"] = lr * self.optim.head_lr_mult
        for opt in self.opt_ds:
            opt.param_groups[0]["lr"] = poly_lr(LR_D, self.iteration, power)

    def __call__(self):
        for opt in [self.opt_g, *self.opt_ds]:
            opt.zero_grad()
        self._set_learning_rates()
        if self.kind == "stage2":
            values = self._stage2()
        else:
            values = self._stage1()
        self.opt_g.step()
        for opt in self.opt_ds:
            opt.step()
        self.iteration += 1
        return values

    def _segmentation(self, image, labels):
        """G's upsampled (main, aux) logits and its cross-entropy losses."""
        size = image.shape[2:]
        main, aux = (upsample(o, size) for o in self.g(image))
        loss_seg = F.cross_entropy(main, labels, ignore_index=IGNORE_LABEL)
        loss_seg_aux = F.cross_entropy(aux, labels, ignore_index=IGNORE_LABEL)
        return main, aux, {"loss_seg": loss_seg, "loss_seg_aux": loss_seg_aux}

    def _stage1(self):
        """supervised, or Stage I (ADVENT's train_advent iteration)."""
        b = self.batch
        set_requires_grad(self.ds, False)
        main_s, aux_s, values = self._segmentation(b["source_image"],
                                                   b["source_label"])
        (values["loss_seg"] + LAMBDA_SEG_AUX * values["loss_seg_aux"]).backward()
        if self.kind == "supervised":
            return {k: v.detach() for k, v in values.items()}
        size = b["target_image"].shape[2:]
        main_t, aux_t = (upsample(o, size) for o in self.g(b["target_image"]))
        maps_t = [F.softmax(main_t, dim=1), F.softmax(aux_t, dim=1)]
        values["loss_adv"] = bce(self.ds[0](maps_t[0]), 1)
        values["loss_adv_aux"] = bce(self.ds[1](maps_t[1]), 1)
        (LAMBDA_ADV_MAIN * values["loss_adv"]
         + LAMBDA_ADV_AUX * values["loss_adv_aux"]).backward()
        set_requires_grad(self.ds, True)
        maps_s = [F.softmax(main_s.detach(), dim=1),
                  F.softmax(aux_s.detach(), dim=1)]
        for d, m_s, m_t, name in zip(self.ds, maps_s, maps_t,
                                     ("loss_d", "loss_d_aux")):
            loss_s = bce(d(m_s), 1) / 2       # source = 1
            loss_s.backward()
            loss_t = bce(d(m_t.detach()), 0) / 2
            loss_t.backward()
            values[name] = loss_s + loss_t
        return {k: v.detach() for k, v in values.items()}

    def _stage2(self):
        """Stage II, CTS (Eq. 5 + Eq. 8)."""
        b = self.batch
        mask = (b["hard_mask"] == 1).float()
        valid = (b["hard_mask"] != PAD_MASK).float()
        set_requires_grad(self.ds, False)
        main, aux, values = self._segmentation(b["image"], b["pseudo_label"])
        maps = [F.softmax(main, dim=1), F.softmax(aux, dim=1)]
        for d, p, suffix in zip(self.ds, maps, ("", "_aux")):
            d_prob = torch.sigmoid(d(p).squeeze(1))
            values["loss_adv" + suffix] = masked_mean((d_prob * mask) ** 2,
                                                      valid)
        (values["loss_seg"] + LAMBDA_SEG_AUX * values["loss_seg_aux"]
         + BETA_MAIN * values["loss_adv"]
         + BETA_AUX * values["loss_adv_aux"]).backward()
        set_requires_grad(self.ds, True)
        for d, p, suffix in zip(self.ds, maps, ("", "_aux")):
            d_prob = torch.sigmoid(d(p.detach()).squeeze(1))
            loss_d = masked_mean((d_prob - b["z"]) ** 2, valid)
            loss_d.backward()
            values["loss_d" + suffix] = loss_d
        return {k: v.detach() for k, v in values.items()}


def runner(step):
    """Runs one step and waits for it (CPU PyTorch is synchronous)."""
    def run():
        return float(step()["loss_seg"])
    return run


def benchmark_config(name, cfg, steps, warmup):
    """Times the three steps at one configuration; returns its JSON record."""
    print(f"[{name}] building the three steps ...", flush=True)
    built = {kind: TorchStep(kind, cfg) for kind in KINDS}
    runners = {kind: runner(built[kind]) for kind in KINDS}
    print(f"[{name}] timing {warmup} warm-up + {steps} rounds ...", flush=True)
    times = time_interleaved(runners, steps, warmup)
    counts = built["supervised"].parameter_counts()
    counts["discriminator_parameters"] = built["stage1"].parameter_counts()[
        "discriminator_parameters"]
    return {**timing_record(cfg, steps, warmup, times), **counts}


def main(argv=None):
    parser = step_parser(__doc__)
    parser.add_argument("--intra_d_output_stride", type=int, default=32,
                        help="Stage II step: the pixel-level Ds' output stride "
                             "(as train_step.py's flag)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (0 = PyTorch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = config_names(args)
    results = {}
    for name in names:
        cfg = {**CONFIGS[name], "d_output_stride": args.intra_d_output_stride}
        results[name] = benchmark_config(name, cfg, *rounds(cfg, args))
    print()
    print_seconds_table(results)
    io_utils.write_json(args.json, {
        "configs": results,
        "machine": {**machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "interop_threads": torch.get_num_interop_threads(),
                    "mkldnn": bool(torch.backends.mkldnn.enabled)},
    })
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
