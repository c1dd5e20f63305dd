"""Options shared by several commands, each declared once (Typer `Annotated` aliases).

The precision rule they feed is `vswin_cli.precision` (no Typer there, so the library never imports the CLI).

Importing this module must stay cheap (no torch, no PyAV): `vswin --help` imports every command module.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


MODEL = "Model"
VIEWS = "Segments and views"
OUT = "Output"
RUN = "Speed and devices"


class Precision(str, Enum):
    """`--precision`: the autocast dtype of the forward (and backward) passes."""

    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Zoo model name, e.g. swin-b-k600 (see `vswin models`), or a checkpoint file.", rich_help_panel=MODEL)]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Local checkpoint instead of --model (vswin train output, official mmaction or torchvision file).", rich_help_panel=MODEL)]
ArchOpt = Annotated[Optional[str], typer.Option(help="With --weights that are not a vswin checkpoint: swin-t, swin-s, swin-b or a config.json.", rich_help_panel=MODEL)]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never use the network: the model and its label map must be in the cache (as VSWIN_OFFLINE=1; import them with `vswin fetch NAME --from FOLDER`).", rich_help_panel=MODEL)]
LabelsOpt = Annotated[Optional[str], typer.Option(help="Class-name file (one per line) or a label set name (default: the model's).", rich_help_panel=MODEL)]
ViewsOpt = Annotated[Optional[str], typer.Option(help="fast (1 clip x 1 centre crop), paper (the model's published protocol: Kinetics 4x3, SSv2 1x3) or CLIPSxCROPS such as 4x3.", rich_help_panel=VIEWS, show_default=False)]
ClipLenOpt = Annotated[Optional[int], typer.Option(min=1, help="Frames per clip (default: the model's, 32).", rich_help_panel=VIEWS)]
FrameIntervalOpt = Annotated[Optional[int], typer.Option(min=1, help="Frame step inside a clip (default: the model's, 2).", rich_help_panel=VIEWS)]
CropSizeOpt = Annotated[Optional[int], typer.Option(min=8, help="Short-side resize and crop size (default: the model's: 224 for the released models; a `vswin train` checkpoint stores its own).", rich_help_panel=VIEWS)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr (errors still).", rich_help_panel=OUT)]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More on stderr, including the video decoders' own log lines.", rich_help_panel=OUT)]
BatchViewsOpt = Annotated[int, typer.Option("--batch-views", help="Views per forward pass on a GPU, batched across segments and videos (memory). On the CPU each view has a pass of its own (as fast, and the same bytes whatever the timing).", rich_help_panel=RUN)]
WorkersOpt = Annotated[Optional[int], typer.Option(min=0, help="Decoding processes (0: decode in the main process). Default: CPU cores, at most 8.", rich_help_panel=RUN)]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:N.", rich_help_panel=RUN)]
PrecisionOpt = Annotated[Precision, typer.Option(help="auto: bf16 on CUDA, and on CPUs with native bf16 (AVX512_BF16/AMX); fp32 elsewhere.", rich_help_panel=RUN)]
RuntimeOpt = Annotated[str, typer.Option("--runtime", envvar="VSWIN_RUNTIME", help="CPU runtime of the network: auto (the fastest installed, measured once), torch, onnxruntime or openvino (pip install 'vswin[cpu]').", rich_help_panel=RUN)]
