public enum _WarmJunctionNative {}
