"""Help texts of the training flags (what each does, its unit, its allowed values) and the
stage-grouped `python -m tf_pixintra.train --helpshort`."""

import textwrap

from tf_pixintra import run_layout

HELP = {
    # What to run.
    "stage": "Stage to run: all, " + ", ".join(run_layout.STAGES)
             + ". 'all' runs --pipeline.",
    "pipeline": "Stages of --stage=all, in order. 'pseudo' and 'intra' count rounds: the n-th "
                "pseudo/intra is round n (round >= 2 adds KLD).",
    "round": "Round of a single --stage=pseudo or --stage=intra (1 or 2).",
    "run_dir": "Run directory (created if missing): config.json, run.json, a directory per stage.",
    "seed": "Random seed (integer) of weight initialisation and data order.",
    # Data.
    "source_dataset": "Labelled source layout: gta5, synthia or cityscapes (with --toyscapes: the "
                      "target's own train labels, the oracle upper bound).",
    "source_root": "Directory of the labelled source data set, in the layout of --source_dataset "
                   "(not needed with --toyscapes).",
    "source_list": "Optional text file of source image names, one per line; empty = all.",
    "target_root": "Directory of the unlabelled target data set, Cityscapes layout (leftImg8bit/, "
                   "gtFine/ for the val split).",
    "target_list": "Optional text file of target train image names, one per line; empty = all.",
    "target_val_split": "Cityscapes split scored as the target validation set (e.g. val).",
    "target_val_list": "Optional text file of target val image names, one per line; empty = all.",
    "source_size": "Source training size H,W in pixels after resizing (two positive integers).",
    "target_size": "Target training (and pseudo stage) size H,W in pixels after resizing (two "
                   "positive integers).",
    "crop_size": "Random crop H,W in pixels after resizing (and random scaling); empty = no crop.",
    "scale_range": "Random rescaling factors lo,hi of training images (0 < lo <= hi, e.g. "
                   "0.75,1.25); empty = none.",
    "toyscapes": "Use the built-in ToyScapes benchmark (generated on first use in "
                 "--toyscapes_dir) instead of --source_root/--target_root.",
    "toyscapes_dir": "Directory of the ToyScapes data (generated on first use, reused after).",
    "toyscapes_seed": "Random seed (integer) of the ToyScapes generator.",
    "toyscapes_counts": "ToyScapes image counts source,target train,target val (3 positive "
                        "integers).",
    "toyscapes_image_size": "ToyScapes image size H,W in pixels (two positive integers).",
    "toyscapes_variant": "ToyScapes variant: standard, or shadows (positive control: soft cast "
                         "shadows over parts of every target image, same scenes and labels; in "
                         "<toyscapes_dir>_shadows).",
    # Model.
    "num_classes": "Number of classes; must be 19 (the Cityscapes trainIds).",
    "depth": "ResNet depth of G's backbone: 18, 34, 50 or 101 (the paper: 101).",
    "width": "Channel multiplier of backbone and heads (> 0; 1 = the paper's, 0.25 = ToyScapes' "
             "tiny net).",
    "bn_mode": "frozen: BatchNorm in inference mode, affine frozen (Caffe DeepLab, use with "
               "pretrained weights); train: ordinary BN (moving statistics averaged over "
               "replicas).",
    "multi_level": "Two output heads (main on layer4, aux on layer3; AdaptSegNet's multi-level "
                   "training); false = main only.",
    "backbone_weights": "Backbone initialisation (the heads start fresh): a keras.applications "
                        "ResNet50/101 weights file (.h5 or .weights.h5) or a PyTorch DeepLab-v2 "
                        "init (.pth, e.g. DeepLab_resnet_pretrained_init-f81d91e8.pth; needs "
                        "torch).",
    "ndf": "Channels of the discriminators' first conv (>= 1, doubled per layer; paper: 64).",
    # Optimisers.
    "momentum": "SGD momentum of G, in [0, 1).",
    "weight_decay": "Coupled L2 weight decay of G (>= 0; 5e-4 in the paper).",
    "poly_power": "Exponent of the poly decay lr * (1 - step/schedule_steps)^power (> 0).",
    "head_lr_mult": "Learning rate of the classifier heads relative to the backbone (factor > 0).",
    "lr_d": "Adam learning rate of each discriminator (> 0), poly-decayed like G's.",
    "adam_beta1": "Adam beta1 of the discriminators, in [0, 1).",
    "adam_beta2": "Adam beta2 of the discriminators, in [0, 1).",
    # Stage I.
    "inter_variant": "Stage I D input: adaptsegnet (softmax maps) or advent (weighted "
                     "self-information maps).",
    "inter_steps": "Stage I (and source-only) training steps (iterations, >= 0).",
    "inter_schedule_steps": "Stage I poly-decay horizon in steps; 0 = --inter_steps.",
    "inter_batch_size": "Stage I global batch size (images per domain per step, >= 1; split over "
                        "replicas).",
    "inter_lr_g": "Stage I SGD learning rate of G (> 0).",
    "inter_lambda_seg_aux": "Stage I weight of the aux head's source cross-entropy (>= 0; 0.1).",
    "inter_lambda_adv_main": "Stage I weight of Eq. 1's main adversarial term (>= 0; 1e-3).",
    "inter_lambda_adv_aux": "Stage I weight of the aux adversarial term (>= 0; 2e-4).",
    "inter_flip": "Stage I: random horizontal flip of source and target (AdaptSegNet: off).",
    "inter_model": "A .keras generator (e.g. from tf_pixintra.import_torch of a released PyTorch "
                   "model) that replaces Stage I: round one's pseudo labels (and "
                   "--intra_init=inter) use it. Leave 'inter' and 'source_only' out of "
                   "--pipeline.",
    # Pseudo labels.
    "selector": "Pseudo-label selector: class_thresholds (Eq. 2-3), ias (IAST instance-adaptive "
                "thresholds) or intrada (the IntraDA baseline's image-level entropy ranking).",
    "alpha": "Eq. 2 scaling of the class thresholds, in [0, 1].",
    "alpha_sweep": "Extra alphas (each in [0, 1]) whose Prop. (Eq. 4) the pseudo stage reports in "
                   "summary.json.",
    "threshold_cap": "Upper bound of the class thresholds t_k (in (0, 1]; 0.9 in the paper).",
    "intrada_lambda": "IntraDA baseline: fraction of target images ranked easy by entropy ([0, "
                      "1]; 0.67).",
    "pseudo_scales": "Pseudo stage prediction scales (factors > 0); probabilities averaged.",
    "pseudo_flip": "The pseudo stage also predicts the flipped image; probabilities averaged.",
    "num_shards": "Split the pseudo stage over this many workers (count, >= 1).",
    "shard_index": "This worker's shard 0..num_shards-1; -1 = all (or merge the workers' shards).",
    "num_preview_images": "The pseudo stage writes a Fig. 2-style PNG (image | pseudo label | "
                          "hard mask M | Z heat map) of each of the first N target images (count, "
                          ">= 0; 0 = none).",
    # Stage II.
    "intra_method": "Stage II adversarial term: pla (Eq. 6), cts (Eq. 8), intrada (baseline) or "
                    "none (Eq. 5 only).",
    "intra_init": "Stage II initialisation: fresh (ImageNet weights from --backbone_weights, or "
                  "random) or inter (the Stage I model).",
    "intra_steps": "Stage II training steps per round (iterations, >= 0).",
    "intra_schedule_steps": "Stage II poly-decay horizon in steps; 0 = --intra_steps.",
    "intra_batch_size": "Stage II global batch size (target images per step, >= 1; split over "
                        "replicas).",
    "intra_lr_g": "Stage II SGD learning rate of G (> 0).",
    "intra_beta_main": "Stage II weight beta of the main adversarial term (Eq. 9; >= 0; 1e-3).",
    "intra_beta_aux": "Stage II weight of the aux head's adversarial term (>= 0; 2e-4).",
    "intra_lambda_seg_aux": "Stage II weight of the aux head's partial cross-entropy (>= 0; 0.1).",
    "intra_kld_lambda": "Weight of the KLD regulariser from round two on (>= 0; 0.1).",
    "intra_d_output_stride": "Stage II discriminators' output stride s: logit grid H/s x W/s, "
                             "then upsampled to pixels. 32 = the paper's D (512x1024 -> 16x32); "
                             "16, 8, 4, 2 keep log2 s stride-2 convs and make the rest stride 1 "
                             "(4: 16x32 at 64x128).",
    "intra_lr_d": "Stage II discriminators' Adam learning rate; 0 (default) = --lr_d, Stage I's "
                  "rate.",
    "flip": "Stage II: random horizontal flip (with random scale and crop); Stage I: "
            "--inter_flip.",
    # Evaluation and export.
    "eval_size": "Evaluation input size H,W in pixels; predictions are resized to the label size.",
    "eval_scales": "Evaluation scales (factors of --eval_size, > 0); probabilities averaged over "
                   "them.",
    "eval_flip": "Evaluation also on the horizontally flipped image, probabilities averaged.",
    "max_eval_images": "Evaluate on the first N target val images only (count); 0 = all.",
    "export_name": "Model name of the export: saved_model/<name>/, <name>_*.tflite.",
    "export_version": "SavedModel version directory number (integer >= 1).",
    "export_tflite": "TFLite variants to write: some of fp32, fp16, int8 (comma-separated).",
    "num_representative": "Target images used to calibrate the int8 TFLite model (count).",
    # Devices, checkpoints, logging.
    "strategy": "Device strategy (multi_worker: TF_CONFIG names the workers). Batch sizes are "
                "GLOBAL: each of R replicas gets batch_size / R examples.",
    "devices": "mirrored: number of devices (CPU-only: the CPU is split into that many); 0 = all "
               "visible.",
    "mixed_precision": "Compute precision. Logits and discriminator outputs stay float32; float16 "
                       "wraps every optimizer in a LossScaleOptimizer.",
    "jit_compile": "Compile train steps with XLA (off by default: it fails under MirroredStrategy "
                   "on CPU).",
    "deterministic": "Deterministic training: TF op determinism "
                     "(tf.config.experimental.enable_op_determinism) and the Python/NumPy/TF "
                     "global seeds from --seed, so the same command on one machine writes the "
                     "same metrics.json. Slower (benchmarks/train_step.py --deterministic "
                     "measures it); may differ across machines or TF builds.",
    "checkpoint_every": "Save a checkpoint every N training steps (> 0); a killed stage resumes "
                        "from the newest.",
    "stop_grace_secs": "After SIGTERM/Ctrl-C, training saves a checkpoint at the end of the step; "
                       "a step not done within this many seconds ends the process (a rerun "
                       "resumes from the newest periodic checkpoint).",
    "peer_wait_secs": "multi_worker: seconds a worker waits for a peer's files (the pseudo "
                      "stage's pass-1 statistics and pass-2 shards; the chief's pseudo summary, "
                      "eval, export) before an error naming them (a crashed peer); raise it if "
                      "the chief's eval or export takes longer.",
    "eval_every": "Evaluate target mIoU every N training steps; 0 = only at a stage's end.",
    "log_every": "Write the training losses and learning rates to TensorBoard (<stage>/tb, needs "
                 "the tensorboard package) every N steps; 0 = never.",
    "image_every": "Write target images with G's prediction (and ground truth when labelled) to "
                   "TensorBoard every N steps and at the last; 0 = never.",
    "num_summary_images": "Target images (val when labelled, else train) in the TensorBoard image "
                          "summaries (count).",
    "intra_diag_every": "Stage II: every N steps log the adversarial term's share of G's gradient "
                        "norm (diag_adv_grad_share; one extra backward pass of G); 0 = never. The "
                        "discriminators' AUC is logged every step regardless.",
    "keras_verbose": "Keras fit() output: 0 = silent, 1 = progress bar, 2 = one line per epoch "
                     "(log level: absl's --verbosity).",
}

# Flag -> group of --helpshort, by the stage that reads it.
GROUPS = (
    ("What to run", ("stage", "pipeline", "round", "run_dir", "seed")),
    ("Data", ("toyscapes", "toyscapes_dir", "toyscapes_seed", "toyscapes_counts",
              "toyscapes_image_size", "toyscapes_variant", "source_dataset", "source_root",
              "source_list", "target_root", "target_list", "target_val_split",
              "target_val_list", "source_size", "target_size", "crop_size", "scale_range")),
    ("Model", ("num_classes", "depth", "width", "bn_mode", "multi_level", "backbone_weights",
               "ndf")),
    ("Optimisers (Stage I and II)", ("momentum", "weight_decay", "poly_power", "head_lr_mult",
                                     "lr_d", "adam_beta1", "adam_beta2")),
    ("Stage I: inter, source_only (Sec 3.1)", ("inter_",)),
    ("Pseudo labels: pseudo (Sec 4.1)", (
        "selector", "alpha", "alpha_sweep", "threshold_cap", "intrada_lambda", "pseudo_scales",
        "pseudo_flip", "num_shards", "shard_index", "num_preview_images")),
    ("Stage II: intra (Sec 4.2)", ("intra_", "flip")),
    ("Evaluation: eval", ("eval_size", "eval_scales", "eval_flip", "max_eval_images")),
    ("Export: export", ("export_", "num_representative")),
)
OTHER_GROUP = "Devices, checkpoints, logging"


def group_of(name):
    """The --helpshort group of flag `name` (exact names, then prefixes)."""
    for title, members in GROUPS:
        if name in members:
            return title
    for title, members in GROUPS:
        if any(m.endswith("_") and name.startswith(m) for m in members):
            return title
    return OTHER_GROUP


def grouped_help(flag_values, names):
    """Help of the flags `names`, grouped by stage, as absl formats one flag."""
    titles = [t for t, _ in GROUPS] + [OTHER_GROUP]
    by_group = {t: [] for t in titles}
    for name in names:
        by_group[group_of(name)].append(flag_values[name])
    lines = ["tf_pixintra.train flags, grouped by the stage that reads them. "
             "--helpfull lists absl's flags too."]
    for title in titles:
        if not by_group[title]:
            continue
        lines.append(f"\n{title}:")
        for flag in by_group[title]:
            head = f"  --{'[no]' if flag.boolean else ''}{flag.name}: "
            default = flag.default_as_str or "''"
            body = f"{flag.help} (default: {default})"   # enums: "<a|b>: ..."
            lines.append(textwrap.fill(head + body, width=80, subsequent_indent="    "))
    return "\n".join(lines)
