"""The public API's contract: typed bodies (``models``) and the OpenAPI document made of them."""
