public enum _WarmJunctionTransport {}
