public enum _WarmJunction {}
