"""Request authentication (signature and token verifiers, matching signers) and ingress limits."""
