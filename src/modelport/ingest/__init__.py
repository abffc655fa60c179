"""Foreign ONNX as its own stage: files nobody exported from PyTorch here (tf2onnx, a model zoo, 2018).

``importing`` makes a bundle of one, checked against ONNX's reference evaluator (``evaluator``);
``upgrade`` lifts an old opset (``conversion``) with proof that the answers did not change
(``upgrade_proof``), and ``first_difference`` names the node when they did; ``doctor`` reads any file
and names each problem with its cure. Sessions are opened through
the runtime layer only. This stage sits at verification's level: the import checks with verification's
parity report, and ``verify`` of a plain ONNX file imports it first.
"""
