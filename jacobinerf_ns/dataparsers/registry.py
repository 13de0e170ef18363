"""nerfstudio entry points of the dataparsers (loaded while nerfstudio builds its dataparser list: keep it light)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

labelled_nerfstudio = DataParserSpecification(
    config=LabelledNerfstudioDataParserConfig(),
    description="nerfstudio-data with optional semantics/instance label maps and classes.json (jacobinerf).",
)
