"""Video instance segmentation (YolactEdge-style) on the RT-DETR detector, ROS-free.

Modules: ``model`` (VISModel: key / non-key paths by composition on detection.RTDETR),
``heads`` (protonet, query coefficients / embeddings, semantic head, mask assembly), ``flow``
(FeatFlowNet, warp, stride-8 fuse), ``criterion`` (mask-aware matching, mask / embedding / flow
losses), ``data`` (clips with masks, track ids, flow), ``train`` (staged, resumable),
``evaluate`` (image-mode mask AP), ``export`` (key / non-key / head ONNX graphs, MACs per path),
``keyframe`` (keyframe policy).
"""
