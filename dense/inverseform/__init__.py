"""InverseForm (Borse et al., CVPR 2021): a structure loss from a frozen inverse-transformation
network.

The network looks at a pair of boundary tiles (predicted, target) and regresses the spatial
transformation between them as normalised parameters, which are 0 for the identity; the loss
is their distance from the identity, averaged over the tiles that cover the whole map and hold
some boundary in either map (tile pairs that are both nearly empty are skipped).

Parameterisations (all in normalised image coordinates, [-1, 1]):

- 4: scale x, scale y, shift x, shift y — what the public release regresses;
- 6: affine, the 2×3 matrix minus the identity;
- 8: homography with h33 = 1, minus the identity.

Each parameter is divided by its spread under the training distribution (stored in the
network as ``param_scale``) so that no parameter dominates the distance.

Distances: ``euclidean`` (the paper's ‖θ̂‖ over normalised parameters), ``geodesic`` (‖log H‖,
homographies) and ``pixels``: how far the tile's content moved, as the root-mean-square
displacement over the tile in pixels — read from a distance head where the network has one
(fitted on the true displacement, so it keeps growing where the parameters become ambiguous),
otherwise computed from the regressed transformation.

Everything InverseForm lives here: ``transforms`` (the transformations and their
parameterisations), ``network`` (the inverse network, its files and the bundled ``nyu13``
one in ``data/``), ``loss`` (the structure loss), ``fit`` (``dense fit-inverseform``) and
``sweep`` (the held-out check in every fit's report).
"""

from dense.inverseform.loss import Distance, InverseFormLoss
from dense.inverseform.network import BUNDLED, InverseNet, load_inverse_net

__all__ = ["BUNDLED", "Distance", "InverseFormLoss", "InverseNet", "load_inverse_net"]
