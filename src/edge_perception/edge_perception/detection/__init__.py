"""RT-DETR-style real-time detector: light CNN backbone, hybrid encoder, deformable decoder.

Modules split by role: :mod:`.backbone`, :mod:`.encoder` (AIFI + CCFM), :mod:`.deform_attn`,
:mod:`.decoder` (query selection + refinement), :mod:`.denoising`, :mod:`.matcher`,
:mod:`.criterion`, :mod:`.postprocess`, :mod:`.model` (``build_rtdetr``), :mod:`.data`,
:mod:`.train`, :mod:`.evaluate`, :mod:`.export`, :mod:`.compress`.
"""
