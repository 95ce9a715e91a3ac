"""Every fixed list of choices, defined once.

The config validator, the CLI's ``choices=``, the experiments and the reports
all read these tuples. Plain Python: reading them imports no torch.
"""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The precision a trained network is run in (predict, evaluate, serve); bf16-checked: bf16, and float32 again
# for the inputs near a decision; auto: see resolve_engine_precision.
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "bf16-checked")
# square: resample to image_size; none: native pixels, centre crop/pad; fit: native pixels when the
# image is not larger than image_size, else shrunk (antialiased) so its short side is image_size first.
RESIZE_MODES = ("square", "none", "fit")
TTA_MODES = ("none", "flip", "five-crop", "five-crop-flip")
AUGMENTATIONS = ("none", "report", "jpeg", "robust", "degrade")
NO_FACE_POLICIES = ("keep", "skip", "fail")
INPUT_FILTERS = ("none", "npr")
# auto: the fastest installed CPU engine (OpenVINO, then ONNX Runtime, then torch); torch on a GPU.
BACKENDS = ("torch", "onnx", "openvino", "auto")
DEVICES = ("auto", "cpu", "cuda")
PSEUDO_FAKE_KINDS = ("sbi", "resynth")
# How training batches are drawn: uniformly; balanced so every (source, class) pair weighs the same; or that,
# and inside a pair each generator (manifest column) in proportion to the square root of its image count.
BALANCE_MODES = ("none", "source-class", "source-class-generator")
# How the decision threshold is chosen on validation for a target false-positive rate: over all reals at once,
# or the strictest over each real collection (a source, or a generator value among its reals), so that no
# collection's reals are called fake more often than the target, however small it is next to the others.
FPR_SCOPES = ("pooled", "collection")
OUTPUT_FORMATS = ("table", "json", "csv")
# Checkpoints a finished run keeps: both best.pt and last.pt (resumable, extendable), or best.pt alone.
KEEP_CHECKPOINTS = ("both", "best")

# Metrics that cv averages and the reports list, in display order.
SUMMARY_METRICS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
    "eer", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
)  # fmt: skip
REPORT_METRICS = (*SUMMARY_METRICS[:8], "eer_threshold", *SUMMARY_METRICS[8:])
