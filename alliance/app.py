"""The Litestar application factory: partner API (``/v1``), operator API (``/admin/v1``), operational
endpoints and OpenAPI. Domains plug in by adding their controllers to the routers below."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from litestar import Controller, Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from alliance.audit.routes import AuditAdminController
from alliance.benefits.routes import BenefitController, RedemptionController
from alliance.brands.admin_routes import AdminKeyController, BrandAdminController
from alliance.brands.routes import BrandSelfController
from alliance.console.routes import console_router
from alliance.contracts.routes import ContractAdminController, ContractController, SigningKeyController
from alliance.core.audit import provide_audit
from alliance.core.auth import admin_guard, brand_guard, provide_admin, provide_caller
from alliance.core.database import database_exception_handlers, provide_db
from alliance.core.heap import frozen_startup_heap
from alliance.core.limits import enforce_request_bounds
from alliance.core.logs import RequestContextMiddleware, configure_logging
from alliance.core.openapi import StrictStructSchemaPlugin
from alliance.core.problems import document_problems, exception_handlers
from alliance.core.settings import Settings, get_settings
from alliance.db.direct import close_direct_pool, create_direct_pool
from alliance.db.session import create_engine, create_session_factory
from alliance.ledger.routes import BalanceController, LedgerAdminController, LedgerController
from alliance.ledger.sealer import ledger_sealer
from alliance.matches.routes import MatchController, TaskController
from alliance.ops.routes import health, ready
from alliance.referrals.routes import ConversionController, ReferralController
from alliance.segments.routes import SegmentController
from alliance.settlement.routes import (
    DisputeController,
    ExchangeKeyController,
    SettlementAdminController,
    StatementController,
)
from alliance.webhooks.delivery import webhook_worker
from alliance.webhooks.routes import WebhookController

__all__ = ["create_app"]

API_VERSION = "0.1.0"

# Each domain adds its controllers here (one line each): the partner API under /v1 (brand key) and
# the operator API under /admin/v1 (operator key). Guards on the routers authenticate every route.
PARTNER_CONTROLLERS: list[type[Controller]] = [
    BrandSelfController,
    SegmentController,
    MatchController,
    TaskController,
    BenefitController,
    RedemptionController,
    ReferralController,
    ConversionController,
    WebhookController,
    SigningKeyController,
    ContractController,
    LedgerController,
    BalanceController,
    StatementController,
    DisputeController,
    ExchangeKeyController,
]
OPERATOR_CONTROLLERS: list[type[Controller]] = [
    BrandAdminController,
    AdminKeyController,
    AuditAdminController,
    ContractAdminController,
    LedgerAdminController,
    SettlementAdminController,
]


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Litestar:
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncGenerator[None, None]:
        engine = create_engine(settings.database_url, echo=settings.sql_echo)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        app.state.direct_pool = await create_direct_pool(engine, settings.redemption_connections)
        try:
            yield
        finally:
            await close_direct_pool(app.state.direct_pool)
            await engine.dispose()

    partner_api = Router(
        path="/v1",
        guards=[brand_guard],
        dependencies={"caller": Provide(provide_caller, sync_to_thread=False)},
        route_handlers=PARTNER_CONTROLLERS,
        security=[{"apiKey": []}],
    )
    admin_api = Router(
        path="/admin/v1",
        guards=[admin_guard],
        dependencies={"operator": Provide(provide_admin, sync_to_thread=False)},
        route_handlers=OPERATOR_CONTROLLERS,
        security=[{"apiKey": []}],
    )
    prometheus = PrometheusConfig(app_name="alliance", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=[health, ready, MetricsController, partner_api, admin_api, console_router(settings)],
        dependencies={
            "db": Provide(provide_db),
            "audit": Provide(provide_audit, sync_to_thread=False),
        },
        exception_handlers={**exception_handlers, **database_exception_handlers},  # outages: 503, not 500
        middleware=[prometheus.middleware],
        before_request=enforce_request_bounds,  # deep JSON, NUL: 400 before any decoding
        plugins=[StrictStructSchemaPlugin()],  # forbid_unknown_fields bodies: additionalProperties false
        # The workers need the database's session factory; the heap is frozen once everything has started.
        lifespan=[database, webhook_worker, ledger_sealer, *([frozen_startup_heap] if settings.freeze_heap else [])],
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="Brand Alliance Exchange API",
            version=API_VERSION,
            description=(
                "Partner API (`/v1`, bearer API key of a brand) and operator API (`/admin/v1`, operator key). "
                "Errors are RFC 9457 problem+json with a stable `type`."
            ),
            path="/schema",
            render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin()],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http", scheme="bearer", description="`Authorization: Bearer bax_...`"
                    )
                }
            ),
        ),
        debug=False,
    )
    document_problems(app)  # the problem+json responses of every route, in the OpenAPI schema
    app.state.settings = settings  # read by handlers that need a setting (e.g. the alliance id)
    # Outermost, so that requests no route matches (404/405) get a request id and an access-log line too.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app
