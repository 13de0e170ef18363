"""nerfstudio entry points of the dataparsers (loaded while nerfstudio builds its dataparser list: keep it light)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
from jacobinerf_ns.dataparsers.replica_semantic_nerf import ReplicaSemanticNerfDataParserConfig
from jacobinerf_ns.dataparsers.scannet_labelled import ScanNetLabelledDataParserConfig

labelled_nerfstudio = DataParserSpecification(
    config=LabelledNerfstudioDataParserConfig(),
    description="nerfstudio-data with optional semantics/instance label maps and classes.json (jacobinerf).",
)

replica_semantic_nerf = DataParserSpecification(
    config=ReplicaSemanticNerfDataParserConfig(),
    description="Replica in the Semantic-NeRF layout (rgb/, semantic_class/, traj_w_c.txt), JacobiNeRF's split "
    "(jacobinerf).",
)

scannet_labelled = DataParserSpecification(
    config=ScanNetLabelledDataParserConfig(),
    description="ScanNet SensReader export (color/, pose/, intrinsic/) with label-filt/ and instance-filt/ "
    "(jacobinerf).",
)
