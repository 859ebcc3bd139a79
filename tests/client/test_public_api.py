"""The client's public names are a promise: adding or removing one is a deliberate change."""

from __future__ import annotations

import tfship.client


def test_client_public_api_is_pinned() -> None:
    assert sorted(tfship.client.__all__) == sorted([
        "connect", "Client", "ModelRef", "ClientConfig", "FaultPolicy", "RetryPolicy", "TlsConfig", "ClassifyResult",
        "Prediction", "ModelMetadata", "SignatureInfo", "TensorSpec", "VersionStatus", "predict_batches",
        "check_parity", "ParityReport", "OutputParity",
    ])
    for name in tfship.client.__all__:
        assert getattr(tfship.client, name) is not None
