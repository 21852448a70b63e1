import { registerCoreRoutes, type CoreAdminDeps } from './core-routes.js'
import { openApiDocument } from './openapi.js'
import type { AdminRouter } from './router.js'
import { registerStoreRoutes } from './store-routes.js'
import type { StoreInspector } from '../persistence/inspect.js'

export { AdminRouter, AdminError, defineRoute, type AdminRegistry, type AdminRoute, type AdminScope } from './router.js'
export type { ReloadOutcome } from './core-routes.js'

/**
 * The core's endpoints of /api/v1 and the OpenAPI document over every route (plugins add
 * theirs through `ctx.admin.route`, before or after: the document is built per request).
 * Sessions and retained messages are `cluster` scope: in Redis mode every node shares them;
 * in memory mode the one node is the whole cluster.
 */
export function mountAdminApi (router: AdminRouter, deps: CoreAdminDeps & { inspector: StoreInspector }): void {
  registerCoreRoutes(router, deps)
  registerStoreRoutes(router, deps.inspector, 'cluster')
  router.openapi = () => openApiDocument(router.routes, { version: deps.version })
}
